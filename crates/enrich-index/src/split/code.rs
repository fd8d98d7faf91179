//! Definitions in code, found with tree-sitter.
//!
//! A span is exactly the definition's syntax node, as LLMC's `lang.py` takes it (so both agree
//! on the hash): leading doc comments, Python decorators and JavaScript `export` are outside it
//! (a C++ `template <…>` header is inside, LLMC has no C++). The walk only descends where
//! definitions live: the file's top level, type bodies, namespaces and modules, and wrappers
//! such as `export`, decorators, preprocessor conditionals and `extern "C"` blocks; never into a
//! function body.
//!
//! Members of a type are their own spans after the type's span, named `Type::member` in Rust and
//! C++, `Type.member` elsewhere, with the enclosing modules, namespaces and types in front
//! (`inner::Point::new`, `Outer.Inner.deep`). Go methods are named after their receiver's type
//! (`Server.Start`). Kinds: `function` (free), `method` (in a type body, Go methods, class fields
//! holding a function), `constructor` (Java), `class`, `struct`, `union`, `enum`, `interface`,
//! `trait`, `impl` (named `Type` or `Trait for Type`), `record`, `type` (Go), `macro`
//! (`macro_rules!`).

use tree_sitter::{Language, Node, Parser};

use super::lines::{LineIndex, line_number};
use super::{RawSpan, first_paragraph};
use crate::lang::Splitter;

/// The definitions in `source`, in file order; empty when the grammar cannot be loaded or the
/// parse gives up.
pub(super) fn definitions(
    parser: &mut Parser,
    splitter: Splitter,
    source: &[u8],
    index: &LineIndex,
) -> Vec<RawSpan> {
    let Some(grammar) = Grammar::for_splitter(splitter) else {
        return Vec::new();
    };
    if parser.set_language(&grammar.language()).is_err() {
        return Vec::new();
    }
    let Some(tree) = parser.parse(source, None) else {
        return Vec::new();
    };
    let mut walker = Walker {
        grammar,
        source,
        index,
        spans: Vec::new(),
    };
    walker.visit_children(tree.root_node(), &mut Vec::new(), false, None);
    walker.spans
}

/// The grammars, and the rules that read their trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grammar {
    Rust,
    Python,
    JavaScript,
    TypeScript,
    Tsx,
    Go,
    Java,
    C,
    Cpp,
}

impl Grammar {
    fn for_splitter(splitter: Splitter) -> Option<Self> {
        Some(match splitter {
            Splitter::Rust => Self::Rust,
            Splitter::Python => Self::Python,
            Splitter::JavaScript => Self::JavaScript,
            Splitter::TypeScript => Self::TypeScript,
            Splitter::Tsx => Self::Tsx,
            Splitter::Go => Self::Go,
            Splitter::Java => Self::Java,
            Splitter::C => Self::C,
            Splitter::Cpp => Self::Cpp,
            Splitter::Markdown | Splitter::Lines => return None,
        })
    }

    fn language(self) -> Language {
        match self {
            Self::Rust => tree_sitter_rust::LANGUAGE.into(),
            Self::Python => tree_sitter_python::LANGUAGE.into(),
            Self::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
            Self::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
            Self::Tsx => tree_sitter_typescript::LANGUAGE_TSX.into(),
            Self::Go => tree_sitter_go::LANGUAGE.into(),
            Self::Java => tree_sitter_java::LANGUAGE.into(),
            Self::C => tree_sitter_c::LANGUAGE.into(),
            Self::Cpp => tree_sitter_cpp::LANGUAGE.into(),
        }
    }

    /// What joins a scope and a member's name.
    fn separator(self) -> &'static str {
        match self {
            Self::Rust | Self::Cpp => "::",
            _ => ".",
        }
    }
}

/// What a node is to the walk.
enum Visit<'t> {
    /// A definition: a span named `name`; with `members`, the body's children are visited as
    /// members of a type, under the given scope name.
    Def {
        kind: &'static str,
        name: String,
        members: Option<(String, Node<'t>)>,
    },
    /// A module or namespace: no span, its body's children are visited under `name` (an
    /// anonymous namespace adds nothing to the scope).
    Scope {
        name: Option<String>,
        body: Node<'t>,
    },
    /// No span, but definitions may be among its children, in the same scope.
    Transparent,
    /// Like `Transparent`, and a definition directly inside takes this node's range (a C++
    /// `template <…>` header belongs to the template).
    Wrapper,
    /// Nothing of interest inside.
    Skip,
}

struct Walker<'s> {
    grammar: Grammar,
    source: &'s [u8],
    index: &'s LineIndex,
    spans: Vec<RawSpan>,
}

impl<'s> Walker<'s> {
    fn visit_children(
        &mut self,
        node: Node<'_>,
        scope: &mut Vec<String>,
        in_type: bool,
        wrapper: Option<Node<'_>>,
    ) {
        let mut cursor = node.walk();
        for child in node.named_children(&mut cursor) {
            self.visit(child, scope, in_type, wrapper);
        }
    }

    fn visit(
        &mut self,
        node: Node<'_>,
        scope: &mut Vec<String>,
        in_type: bool,
        wrapper: Option<Node<'_>>,
    ) {
        match self.classify(node, in_type) {
            Visit::Skip => {}
            Visit::Transparent => self.visit_children(node, scope, in_type, None),
            Visit::Wrapper => self.visit_children(node, scope, in_type, Some(node)),
            Visit::Scope { name, body } => {
                let pushed = name.is_some();
                scope.extend(name);
                self.visit_children(body, scope, false, None);
                if pushed {
                    scope.pop();
                }
            }
            Visit::Def {
                kind,
                name,
                members,
            } => {
                let range = wrapper.unwrap_or(node);
                let symbol = if scope.is_empty() {
                    name
                } else {
                    format!(
                        "{}{}{name}",
                        scope.join(self.grammar.separator()),
                        self.grammar.separator()
                    )
                };
                let doc_hint = self.doc_hint(node, range);
                self.push(range, symbol, kind, doc_hint);
                if let Some((scope_name, body)) = members {
                    scope.push(scope_name);
                    self.visit_children(body, scope, true, None);
                    scope.pop();
                }
            }
        }
    }

    fn push(
        &mut self,
        node: Node<'_>,
        symbol: String,
        kind: &'static str,
        doc_hint: Option<String>,
    ) {
        let (start, end) = (node.start_byte(), node.end_byte());
        let start_line = self.index.line_of(start);
        // A node that ends with its newline (a Rust line comment) ends on the line before.
        let end_line = self.index.line_of(end.saturating_sub(1).max(start));
        self.spans.push(RawSpan {
            symbol,
            kind,
            byte_start: start,
            byte_end: end,
            start_line: line_number(start_line),
            end_line: line_number(end_line),
            doc_hint,
        });
    }

    fn text(&self, node: Node<'_>) -> String {
        String::from_utf8_lossy(&self.source[node.byte_range()])
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The text of `node`'s child `field`.
    fn field(&self, node: Node<'_>, field: &str) -> Option<String> {
        node.child_by_field_name(field)
            .map(|n| self.text(n))
            .filter(|t| !t.is_empty())
    }

    fn classify<'t>(&self, node: Node<'t>, in_type: bool) -> Visit<'t> {
        match self.grammar {
            Grammar::Rust => self.rust(node, in_type),
            Grammar::Python => self.python(node, in_type),
            Grammar::JavaScript | Grammar::TypeScript | Grammar::Tsx => {
                self.javascript(node, in_type)
            }
            Grammar::Go => self.go(node),
            Grammar::Java => self.java(node),
            Grammar::C | Grammar::Cpp => self.c_family(node, in_type),
        }
    }

    fn rust<'t>(&self, node: Node<'t>, in_type: bool) -> Visit<'t> {
        let kind = match node.kind() {
            "function_item" => function_kind(in_type),
            "struct_item" => "struct",
            "enum_item" => "enum",
            "union_item" => "union",
            "macro_definition" => "macro",
            "trait_item" => {
                return self.type_def(node, "trait", self.field(node, "name"));
            }
            "impl_item" => {
                let Some(ty) = node.child_by_field_name("type") else {
                    return Visit::Skip;
                };
                // `Point<T>` is `Point` as a scope.
                let ty = match ty.kind() {
                    "generic_type" => ty.child_by_field_name("type").unwrap_or(ty),
                    _ => ty,
                };
                let ty = self.text(ty);
                let name = match self.field(node, "trait") {
                    Some(tr) => format!("{tr} for {ty}"),
                    None => ty.clone(),
                };
                return Visit::Def {
                    kind: "impl",
                    name,
                    members: node.child_by_field_name("body").map(|b| (ty, b)),
                };
            }
            "mod_item" => {
                return match node.child_by_field_name("body") {
                    Some(body) => Visit::Scope {
                        name: self.field(node, "name"),
                        body,
                    },
                    None => Visit::Skip,
                };
            }
            _ => return Visit::Skip,
        };
        self.leaf(kind, self.field(node, "name"))
    }

    fn python<'t>(&self, node: Node<'t>, in_type: bool) -> Visit<'t> {
        match node.kind() {
            "class_definition" => self.type_def(node, "class", self.field(node, "name")),
            "function_definition" => self.leaf(function_kind(in_type), self.field(node, "name")),
            "decorated_definition"
            | "if_statement"
            | "elif_clause"
            | "else_clause"
            | "try_statement"
            | "except_clause"
            | "finally_clause"
            | "with_statement"
            | "block" => Visit::Transparent,
            _ => Visit::Skip,
        }
    }

    fn javascript<'t>(&self, node: Node<'t>, in_type: bool) -> Visit<'t> {
        match node.kind() {
            "class_declaration" | "abstract_class_declaration" | "class" => {
                self.type_def(node, "class", self.field(node, "name"))
            }
            "function_declaration" | "generator_function_declaration" => {
                self.leaf("function", self.field(node, "name"))
            }
            "method_definition" if in_type => self.leaf("method", self.field(node, "name")),
            // A class field holding a function: `handler = () => {}`.
            "field_definition" | "public_field_definition" if in_type => {
                let holds_function = node
                    .child_by_field_name("value")
                    .is_some_and(|v| is_function_value(v.kind()));
                let name = self
                    .field(node, "property")
                    .or_else(|| self.field(node, "name"));
                if holds_function {
                    self.leaf("method", name)
                } else {
                    Visit::Skip
                }
            }
            // `const f = () => {}` with a single declarator: the whole declaration.
            "lexical_declaration" | "variable_declaration" => {
                let mut cursor = node.walk();
                let mut declarators = node.named_children(&mut cursor);
                match (declarators.next(), declarators.next()) {
                    (Some(d), None)
                        if d.kind() == "variable_declarator"
                            && d.child_by_field_name("value")
                                .is_some_and(|v| is_function_value(v.kind())) =>
                    {
                        self.leaf("function", self.field(d, "name"))
                    }
                    _ => Visit::Skip,
                }
            }
            "interface_declaration" => self.leaf("interface", self.field(node, "name")),
            "enum_declaration" => self.leaf("enum", self.field(node, "name")),
            "internal_module" | "module" => match node.child_by_field_name("body") {
                Some(body) => Visit::Scope {
                    name: self.field(node, "name"),
                    body,
                },
                None => Visit::Skip,
            },
            "export_statement" | "expression_statement" => Visit::Transparent,
            _ => Visit::Skip,
        }
    }

    fn go<'t>(&self, node: Node<'t>) -> Visit<'t> {
        match node.kind() {
            "function_declaration" => self.leaf("function", self.field(node, "name")),
            "method_declaration" => {
                let receiver = node
                    .child_by_field_name("receiver")
                    .and_then(|list| list.named_child(0))
                    .and_then(|param| self.field(param, "type"))
                    .map(|ty| {
                        let ty = ty.trim_start_matches('*').trim();
                        ty.split('[').next().unwrap_or(ty).to_owned()
                    });
                let name = self.field(node, "name");
                match (receiver, name) {
                    (Some(r), Some(n)) => self.leaf("method", Some(format!("{r}.{n}"))),
                    (None, name) => self.leaf("method", name),
                    (Some(_), None) => Visit::Skip,
                }
            }
            "type_declaration" => Visit::Transparent,
            "type_spec" => {
                let kind = match node.child_by_field_name("type").map(|t| t.kind()) {
                    Some("struct_type") => "struct",
                    Some("interface_type") => "interface",
                    _ => "type",
                };
                self.leaf(kind, self.field(node, "name"))
            }
            "type_alias" => self.leaf("type", self.field(node, "name")),
            _ => Visit::Skip,
        }
    }

    fn java<'t>(&self, node: Node<'t>) -> Visit<'t> {
        let kind = match node.kind() {
            "class_declaration" => "class",
            "interface_declaration" => "interface",
            "enum_declaration" => "enum",
            "record_declaration" => "record",
            "method_declaration" => {
                // An abstract or interface method without a body has nothing to describe.
                if node.child_by_field_name("body").is_none() {
                    return Visit::Skip;
                }
                return self.leaf("method", self.field(node, "name"));
            }
            "constructor_declaration" | "compact_constructor_declaration" => {
                return self.leaf("constructor", self.field(node, "name"));
            }
            "enum_body_declarations" => return Visit::Transparent,
            _ => return Visit::Skip,
        };
        self.type_def(node, kind, self.field(node, "name"))
    }

    fn c_family<'t>(&self, node: Node<'t>, in_type: bool) -> Visit<'t> {
        let cpp = self.grammar == Grammar::Cpp;
        match node.kind() {
            "function_definition" => {
                let name = node
                    .child_by_field_name("declarator")
                    .and_then(|d| self.declarator_name(d));
                self.leaf(function_kind(in_type), name)
            }
            "struct_specifier" | "union_specifier" | "enum_specifier" | "class_specifier" => {
                let Some(body) = node.child_by_field_name("body") else {
                    return Visit::Skip;
                };
                let kind = specifier_kind(node.kind());
                match self.field(node, "name") {
                    Some(name) if cpp && kind != "enum" => Visit::Def {
                        kind,
                        members: Some((name.clone(), body)),
                        name,
                    },
                    name => self.leaf(kind, name),
                }
            }
            // `typedef struct { … } name;`: the typedef, named by its declarator.
            "type_definition" => {
                let Some(ty) = node.child_by_field_name("type") else {
                    return Visit::Skip;
                };
                if !ty.kind().ends_with("_specifier") || ty.child_by_field_name("body").is_none() {
                    return Visit::Skip;
                }
                let name = node
                    .child_by_field_name("declarator")
                    .and_then(|d| self.declarator_name(d));
                self.leaf(specifier_kind(ty.kind()), name)
            }
            "namespace_definition" if cpp => match node.child_by_field_name("body") {
                Some(body) => Visit::Scope {
                    name: self.field(node, "name"),
                    body,
                },
                None => Visit::Skip,
            },
            "template_declaration" if cpp => Visit::Wrapper,
            "preproc_if"
            | "preproc_ifdef"
            | "preproc_else"
            | "preproc_elif"
            | "preproc_elifdef"
            | "linkage_specification"
            | "declaration_list" => Visit::Transparent,
            _ => Visit::Skip,
        }
    }

    /// The name a C or C++ declarator declares: through pointers, references, parentheses and
    /// the function declarator, to the identifier (`Shape::area`, `~Shape`, `operator==`).
    fn declarator_name(&self, mut node: Node<'_>) -> Option<String> {
        loop {
            match node.kind() {
                "identifier"
                | "field_identifier"
                | "type_identifier"
                | "qualified_identifier"
                | "destructor_name"
                | "operator_name"
                | "template_function"
                | "operator_cast" => {
                    return Some(self.text(node).replace(' ', ""));
                }
                _ => {
                    node = node
                        .child_by_field_name("declarator")
                        .or_else(|| node.named_child(0))?;
                }
            }
        }
    }

    /// A definition without members; skipped when it has no name.
    fn leaf<'t>(&self, kind: &'static str, name: Option<String>) -> Visit<'t> {
        match name {
            Some(name) => Visit::Def {
                kind,
                name,
                members: None,
            },
            None => Visit::Skip,
        }
    }

    /// A type whose body holds members (field `body`); skipped when it has no name.
    fn type_def<'t>(&self, node: Node<'t>, kind: &'static str, name: Option<String>) -> Visit<'t> {
        let Some(name) = name else {
            return Visit::Skip;
        };
        Visit::Def {
            kind,
            members: node.child_by_field_name("body").map(|b| (name.clone(), b)),
            name,
        }
    }

    /// The definition's docstring (Python) or the comments right above it (`range` is the
    /// span's node; an `export` around it counts as part of it).
    fn doc_hint(&self, node: Node<'_>, range: Node<'_>) -> Option<String> {
        if self.grammar == Grammar::Python {
            return self.docstring(node);
        }
        // The comments of `export function f` and of `type T struct` sit above the wrapper.
        let mut anchor = range;
        while let Some(parent) = anchor.parent().filter(|p| {
            matches!(p.kind(), "export_statement" | "type_declaration")
                && anchor.prev_named_sibling().is_none()
        }) {
            anchor = parent;
        }
        let mut comments = Vec::new();
        let mut next_row = anchor.start_position().row;
        let mut prev = anchor.prev_sibling();
        while let Some(sibling) = prev {
            let kind = sibling.kind();
            if kind == "attribute_item" {
                next_row = sibling.start_position().row;
            } else if kind.ends_with("comment") {
                let end = sibling.end_position();
                let end_row = if end.column == 0 && end.row > sibling.start_position().row {
                    end.row - 1
                } else {
                    end.row
                };
                if end_row + 1 < next_row {
                    break;
                }
                comments.push(sibling);
                next_row = sibling.start_position().row;
            } else {
                break;
            }
            prev = sibling.prev_sibling();
        }
        let text: String = comments
            .iter()
            .rev()
            .map(|c| String::from_utf8_lossy(&self.source[c.byte_range()]).into_owned() + "\n")
            .collect();
        first_paragraph(text.lines().map(strip_comment_markers))
    }

    /// A Python docstring: the string that opens the body.
    fn docstring(&self, node: Node<'_>) -> Option<String> {
        let body = node.child_by_field_name("body")?;
        let first = body.named_child(0)?;
        if first.kind() != "expression_statement" {
            return None;
        }
        let literal = first.named_child(0)?;
        if literal.kind() != "string" {
            return None;
        }
        let mut cursor = literal.walk();
        let content: String = literal
            .named_children(&mut cursor)
            .filter(|c| c.kind() == "string_content")
            .map(|c| String::from_utf8_lossy(&self.source[c.byte_range()]).into_owned())
            .collect();
        first_paragraph(content.lines())
    }
}

fn function_kind(in_type: bool) -> &'static str {
    if in_type { "method" } else { "function" }
}

fn specifier_kind(specifier: &str) -> &'static str {
    match specifier {
        "class_specifier" => "class",
        "union_specifier" => "union",
        "enum_specifier" => "enum",
        _ => "struct",
    }
}

fn is_function_value(kind: &str) -> bool {
    matches!(
        kind,
        "arrow_function" | "function_expression" | "function" | "generator_function"
    )
}

/// One comment line without its markers (`///`, `//!`, `//`, `/**`, `/*`, `*/`, a leading `*`,
/// `#`).
fn strip_comment_markers(line: &str) -> &str {
    let mut line = line.trim();
    for prefix in ["///", "//!", "//", "/**", "/*!", "/*", "#"] {
        if let Some(rest) = line.strip_prefix(prefix) {
            line = rest;
            break;
        }
    }
    line = line.trim_end().strip_suffix("*/").unwrap_or(line);
    let line = line.trim();
    line.strip_prefix('*').map_or(line, str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_markers_are_stripped() {
        let cases = [
            ("/// Makes one.", "Makes one."),
            ("//! Crate doc", "Crate doc"),
            ("/** A class. */", "A class."),
            (" * continued", "continued"),
            ("*/", ""),
            ("// plain", "plain"),
        ];
        for (line, expected) in cases {
            assert_eq!(strip_comment_markers(line), expected, "{line:?}");
        }
    }
}
