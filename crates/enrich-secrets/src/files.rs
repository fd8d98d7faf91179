//! The files that hold secrets by their nature, which the indexer leaves out by default.

/// One entry of [`SECRET_FILES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretFile {
    /// A glob over the path relative to the repository root, `/`-separated; a glob without
    /// `/` matches the file name in any directory (as in `.gitignore`). Matched without regard
    /// to case.
    pub glob: &'static str,
    /// What such a file holds.
    pub holds: &'static str,
    /// Where the entry comes from.
    pub source: &'static str,
}

/// gitrob's signatures (`core/signatures.go` of github.com/michenriksen/gitrob): its entries for
/// keys, key stores and credential files (not its history, shell and application config
/// entries, which hold code to describe).
const GITROB: &str = "gitrob core/signatures.go";

/// The files enrich never indexes unless `[enrichment.index] include` names them: private keys,
/// certificates and key stores, environment files, and the credential stores of package
/// managers, version control and cloud tools.
pub const SECRET_FILES: &[SecretFile] = &[
    // Private keys and certificates.
    SecretFile {
        glob: "*.pem",
        holds: "a private key or certificate (PEM)",
        source: GITROB,
    },
    SecretFile {
        glob: "*.key",
        holds: "a private key",
        source: GITROB,
    },
    SecretFile {
        glob: "*.keypair",
        holds: "a key pair",
        source: GITROB,
    },
    SecretFile {
        glob: "*.p12",
        holds: "a PKCS #12 key bundle",
        source: "gitleaks config/gitleaks.toml, rule pkcs12-file; gitrob",
    },
    SecretFile {
        glob: "*.pfx",
        holds: "a PKCS #12 key bundle",
        source: "gitleaks config/gitleaks.toml, rule pkcs12-file; gitrob",
    },
    SecretFile {
        glob: "*.pkcs12",
        holds: "a PKCS #12 key bundle",
        source: GITROB,
    },
    SecretFile {
        glob: "*.crt",
        holds: "a certificate",
        source: "enrich: certificates, like *.pem, which may hold their key too",
    },
    SecretFile {
        glob: "*.cer",
        holds: "a certificate",
        source: "enrich: certificates, like *.pem, which may hold their key too",
    },
    SecretFile {
        glob: "id_rsa*",
        holds: "an SSH key",
        source: GITROB,
    },
    SecretFile {
        glob: "id_dsa*",
        holds: "an SSH key",
        source: GITROB,
    },
    SecretFile {
        glob: "id_ecdsa*",
        holds: "an SSH key",
        source: GITROB,
    },
    SecretFile {
        glob: "id_ed25519*",
        holds: "an SSH key",
        source: GITROB,
    },
    SecretFile {
        glob: "*_rsa",
        holds: "an SSH private key",
        source: GITROB,
    },
    SecretFile {
        glob: "*_dsa",
        holds: "an SSH private key",
        source: GITROB,
    },
    SecretFile {
        glob: "*_ecdsa",
        holds: "an SSH private key",
        source: GITROB,
    },
    SecretFile {
        glob: "*_ed25519",
        holds: "an SSH private key",
        source: GITROB,
    },
    SecretFile {
        glob: "otr.private_key",
        holds: "an OTR private key",
        source: GITROB,
    },
    // Key stores and password databases.
    SecretFile {
        glob: "*.jks",
        holds: "a Java key store",
        source: GITROB,
    },
    SecretFile {
        glob: "*.keystore",
        holds: "a key store",
        source: GITROB,
    },
    SecretFile {
        glob: "*.keyring",
        holds: "a key ring",
        source: GITROB,
    },
    SecretFile {
        glob: "*.kdb",
        holds: "a KeePass database",
        source: GITROB,
    },
    SecretFile {
        glob: "*.kdbx",
        holds: "a KeePass database",
        source: GITROB,
    },
    SecretFile {
        glob: "*.psafe3",
        holds: "a Password Safe database",
        source: GITROB,
    },
    SecretFile {
        glob: "*.ovpn",
        holds: "an OpenVPN profile (often with its keys inline)",
        source: GITROB,
    },
    // Environment files.
    SecretFile {
        glob: ".env",
        holds: "environment variables, often credentials",
        source: GITROB,
    },
    SecretFile {
        glob: ".env.*",
        holds: "environment variables, often credentials",
        source: "gitrob (.env), widened to its per-environment variants",
    },
    SecretFile {
        glob: "*.env",
        holds: "environment variables, often credentials",
        source: "gitrob (.env), widened to its per-environment variants",
    },
    SecretFile {
        glob: ".envrc",
        holds: "direnv's environment variables",
        source: "gitrob (.env), widened to direnv's file",
    },
    // Credential stores.
    SecretFile {
        glob: ".npmrc",
        holds: "npm registry tokens",
        source: GITROB,
    },
    SecretFile {
        glob: ".pypirc",
        holds: "PyPI upload credentials",
        source: "enrich: the file twine and setuptools read PyPI credentials from",
    },
    SecretFile {
        glob: ".netrc",
        holds: "login credentials",
        source: GITROB,
    },
    SecretFile {
        glob: "_netrc",
        holds: "login credentials",
        source: GITROB,
    },
    SecretFile {
        glob: ".git-credentials",
        holds: "git's stored credentials",
        source: GITROB,
    },
    SecretFile {
        glob: ".pgpass",
        holds: "PostgreSQL passwords",
        source: GITROB,
    },
    SecretFile {
        glob: ".htpasswd",
        holds: "password hashes",
        source: GITROB,
    },
    SecretFile {
        glob: ".dockercfg",
        holds: "container registry credentials",
        source: GITROB,
    },
    SecretFile {
        glob: ".docker/config.json",
        holds: "container registry credentials",
        source: "gitrob (.dockercfg), widened to its current location",
    },
    SecretFile {
        glob: ".aws/credentials",
        holds: "AWS credentials",
        source: GITROB,
    },
    SecretFile {
        glob: ".s3cfg",
        holds: "S3 credentials",
        source: GITROB,
    },
    SecretFile {
        glob: ".gem/credentials",
        holds: "a RubyGems API key",
        source: GITROB,
    },
    SecretFile {
        glob: "credentials*.json",
        holds: "service credentials (Google's OAuth client files are named so)",
        source: "gitrob (paths containing `credential`), narrowed to JSON credential files",
    },
    SecretFile {
        glob: "client_secret*.json",
        holds: "an OAuth client secret (Google's download name)",
        source: "gitrob (paths containing `credential`), narrowed to OAuth client files",
    },
    SecretFile {
        glob: "credentials.xml",
        holds: "Jenkins credentials",
        source: GITROB,
    },
    SecretFile {
        glob: "kubeconfig",
        holds: "Kubernetes cluster credentials",
        source: "enrich: the file KUBECONFIG names by convention",
    },
    SecretFile {
        glob: ".kube/config",
        holds: "Kubernetes cluster credentials",
        source: "enrich: kubectl's default credentials file",
    },
    SecretFile {
        glob: "terraform.tfvars",
        holds: "Terraform variables, often provider credentials",
        source: GITROB,
    },
];
