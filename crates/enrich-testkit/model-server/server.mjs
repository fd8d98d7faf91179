#!/usr/bin/env node
// An Ollama-API-compatible HTTP server over a real llama.cpp model (node-llama-cpp), so that
// enrich's Ollama adapter can be tested end to end on a machine where Ollama itself cannot be
// installed. It serves ONE model from a GGUF file, one request at a time, on CPU.
//
//   node server.mjs --model PATH [--port 0] [--host 127.0.0.1] [--name smollm2:135m]
//                   [--ctx 2048] [--threads 1] [--max-queue 512] [--exit-on-stdin-close]
//
// Once listening it prints exactly one line to stdout, {"listening":"http://HOST:PORT"}, and
// nothing else ever; logs go to stderr. See README.md for what of Ollama's API (and of its
// OpenAI-compatible /v1) it implements.

import { createHash } from "node:crypto";
import { createReadStream, statSync } from "node:fs";
import http from "node:http";
import { basename } from "node:path";
import { parseArgs } from "node:util";

import { getLlama, LlamaChat, LlamaCompletion, LlamaLogLevel, resolveChatWrapper } from "node-llama-cpp";

// The Ollama release whose API this server follows (answered by GET /api/version).
const OLLAMA_API_VERSION = "0.12.0";
// Ollama's defaults (api/types.go DefaultOptions).
const DEFAULTS = {
    temperature: 0.8,
    top_k: 40,
    top_p: 0.9,
    min_p: 0.0,
    repeat_penalty: 1.1,
    repeat_last_n: 64,
    presence_penalty: 0,
    frequency_penalty: 0,
    num_predict: -1,
    seed: -1,
};
const NUMBER_OPTIONS = [
    "temperature", "top_k", "top_p", "min_p", "repeat_penalty", "repeat_last_n",
    "presence_penalty", "frequency_penalty", "num_predict", "seed", "num_ctx",
];
const MAX_BODY_BYTES = 64 * 1024 * 1024;
const CONTEXT_EXCEEDED = "the input length exceeds the context length";
// GGUF general.file_type values (llama.cpp's llama_ftype) to Ollama's quantization names.
const FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
};

/**
 * An error answered with an HTTP status: `{"error": message}` on Ollama's routes, OpenAI's
 * `{"error": {message, type, param, code}}` on /v1 routes (`code` is OpenAI's error code).
 */
class ApiError extends Error {
    constructor(status, message, code = null) {
        super(message);
        this.status = status;
        this.code = code;
    }
}

function log(message) {
    process.stderr.write(`model-server: ${message}\n`);
}

function parseCli(argv) {
    const { values } = parseArgs({
        args: argv,
        options: {
            model: { type: "string" },
            port: { type: "string", default: "0" },
            host: { type: "string", default: "127.0.0.1" },
            name: { type: "string", default: "smollm2:135m" },
            ctx: { type: "string", default: "2048" },
            threads: { type: "string", default: "1" },
            "max-queue": { type: "string", default: "512" },
            "exit-on-stdin-close": { type: "boolean", default: false },
        },
        strict: true,
    });
    if (!values.model) {
        throw new Error("--model PATH is required (a GGUF file; `cargo xtask model-server provision` fetches one)");
    }
    const int = (flag, min) => {
        const n = Number(values[flag]);
        if (!Number.isInteger(n) || n < min) {
            throw new Error(`--${flag} must be an integer >= ${min}, got ${JSON.stringify(values[flag])}`);
        }
        return n;
    };
    return {
        model: values.model,
        port: int("port", 0),
        host: values.host,
        name: normalizeName(values.name),
        ctx: int("ctx", 16),
        threads: int("threads", 1),
        maxQueue: int("max-queue", 1),
        exitOnStdinClose: values["exit-on-stdin-close"],
    };
}

/** Ollama's name normalisation: a name without a tag means `:latest`; names are case-insensitive. */
function normalizeName(name) {
    const lower = String(name).toLowerCase();
    const lastPart = lower.slice(lower.lastIndexOf("/") + 1);
    return lastPart.includes(":") ? lower : `${lower}:latest`;
}

async function sha256File(path) {
    const hash = createHash("sha256");
    for await (const chunk of createReadStream(path)) hash.update(chunk);
    return hash.digest("hex");
}

/** Ollama's "134.52M" style parameter size. */
function formatParameterCount(count) {
    if (!Number.isFinite(count) || count <= 0) return "";
    const units = [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "K"]];
    for (const [scale, unit] of units) {
        if (count >= scale) return `${Number((count / scale).toFixed(2))}${unit}`;
    }
    return String(count);
}

/** GGUF metadata flattened to Ollama's `model_info` keys; big arrays (the vocabulary) become null. */
function flattenMetadata(value, prefix = "", out = {}) {
    for (const [key, inner] of Object.entries(value)) {
        const path = prefix ? `${prefix}.${key}` : key;
        if (inner !== null && typeof inner === "object" && !Array.isArray(inner)) {
            flattenMetadata(inner, path, out);
        } else if (Array.isArray(inner) && inner.length > 64) {
            out[path] = null;
        } else {
            out[path] = typeof inner === "bigint" ? Number(inner) : inner;
        }
    }
    return out;
}

/** Runs jobs one at a time, like Ollama with OLLAMA_NUM_PARALLEL=1, refusing past maxQueue. */
class Slot {
    constructor(maxQueue) {
        this.maxQueue = maxQueue;
        this.pending = 0;
        this.tail = Promise.resolve();
    }

    run(job) {
        if (this.pending >= this.maxQueue) {
            throw new ApiError(503, "server busy, please try again.  maximum pending requests exceeded");
        }
        this.pending += 1;
        const result = this.tail.then(job);
        this.tail = result.catch(() => {}).finally(() => {
            this.pending -= 1;
        });
        return result;
    }
}

class ModelServer {
    constructor(cli, llama, model, info) {
        this.cli = cli;
        this.llama = llama;
        this.model = model;
        this.info = info;
        this.chatWrapper = resolveChatWrapper(model);
        this.slot = new Slot(cli.maxQueue);
        this.grammars = new Map();
        /** The kept llama.cpp context and its sequence ({@link ModelServer#runnerFor}). */
        this.runner = null;
    }

    static async start(cli) {
        const started = performance.now();
        const llama = await getLlama({
            gpu: false,
            build: "never",
            skipDownload: true,
            maxThreads: cli.threads,
            logLevel: LlamaLogLevel.warn,
            logger: (level, message) => log(`llama.cpp ${level}: ${message.trimEnd()}`),
        });
        const model = await llama.loadModel({ modelPath: cli.model, gpuLayers: 0 });
        const stat = statSync(cli.model);
        const metadata = model.fileInfo.metadata;
        const architecture = metadata.general?.architecture ?? "unknown";
        const info = {
            size: stat.size,
            modifiedAt: stat.mtime.toISOString(),
            digest: await sha256File(cli.model),
            architecture,
            trainContext: model.trainContextSize,
            parameterCount: model.fileInsights.totalParameters,
            quantization: FILE_TYPES[metadata.general?.file_type] ?? "unknown",
            chatTemplate: metadata.tokenizer?.chat_template ?? "",
            modelInfo: flattenMetadata(metadata),
        };
        info.modelInfo["general.parameter_count"] = info.parameterCount;
        const server = new ModelServer(cli, llama, model, info);
        log(`loaded ${basename(cli.model)} as ${cli.name} (${architecture}, ${info.quantization}, ` +
            `chat wrapper ${server.chatWrapper.wrapperName}) in ${Math.round(performance.now() - started)} ms`);
        return server;
    }

    details() {
        return {
            parent_model: "",
            format: "gguf",
            family: this.info.architecture,
            families: [this.info.architecture],
            parameter_size: formatParameterCount(this.info.parameterCount),
            quantization_level: this.info.quantization,
        };
    }

    requireModel(name) {
        if (typeof name !== "string" || name === "" || normalizeName(name) !== this.cli.name) {
            throw new ApiError(404, `model '${typeof name === "string" ? name : ""}' not found, try pulling it first`, "model_not_found");
        }
    }

    tags() {
        return {
            models: [{
                name: this.cli.name,
                model: this.cli.name,
                modified_at: this.info.modifiedAt,
                size: this.info.size,
                digest: this.info.digest,
                details: this.details(),
            }],
        };
    }

    /** GET /v1/models, as Ollama's OpenAI-compatible API lists pulled models. */
    openAiModels() {
        return {
            object: "list",
            data: [{
                id: this.cli.name,
                object: "model",
                created: Math.floor(Date.parse(this.info.modifiedAt) / 1000),
                owned_by: "library",
            }],
        };
    }

    ps() {
        return {
            models: [{
                name: this.cli.name,
                model: this.cli.name,
                size: this.info.size,
                digest: this.info.digest,
                details: this.details(),
                // The model stays loaded for the server's life, as with keep_alive -1.
                expires_at: "2318-01-01T00:00:00Z",
                size_vram: 0,
                context_length: this.cli.ctx,
            }],
        };
    }

    show(body) {
        this.requireModel(body.model ?? body.name);
        return {
            license: this.model.fileInfo.metadata.general?.license ?? "",
            modelfile: `# Modelfile generated by enrich's model-server\nFROM ${this.cli.model}\n`,
            parameters: `num_ctx ${this.cli.ctx}`,
            template: this.info.chatTemplate,
            details: this.details(),
            model_info: this.info.modelInfo,
            capabilities: ["completion"],
            modified_at: this.info.modifiedAt,
        };
    }

    /**
     * POST /tokenize, as llama.cpp's llama-server answers it: the model's tokens of `content`
     * (no BOS token; special-token text such as `<|im_start|>` read as plain text), so a client
     * can size a piece of a prompt in the model's own tokens.
     */
    tokenize(body) {
        if (body.model !== undefined) this.requireModel(body.model);
        if (typeof body.content !== "string") throw new ApiError(400, "content must be a string");
        return { tokens: Array.from(this.model.tokenize(body.content)) };
    }

    /** Sampling and length settings from Ollama's `options`, Ollama's defaults for the rest. */
    options(raw) {
        if (raw !== undefined && raw !== null && (typeof raw !== "object" || Array.isArray(raw))) {
            throw new ApiError(400, "options must be an object");
        }
        const given = raw ?? {};
        for (const key of NUMBER_OPTIONS) {
            if (given[key] !== undefined && given[key] !== null && typeof given[key] !== "number") {
                throw new ApiError(400, `option "${key}" must be a number, got ${JSON.stringify(given[key])}`);
            }
        }
        const stop = given.stop ?? [];
        if (!Array.isArray(stop) || stop.some((s) => typeof s !== "string")) {
            throw new ApiError(400, 'option "stop" must be an array of strings');
        }
        const o = { ...DEFAULTS, ...Object.fromEntries(Object.entries(given).filter(([, v]) => v !== null)) };
        const numCtx = Math.max(16, Math.min(Math.trunc(o.num_ctx ?? this.cli.ctx), this.info.trainContext));
        return {
            numCtx,
            numPredict: Math.trunc(o.num_predict),
            stop: stop.filter((s) => s !== ""),
            sampling: {
                temperature: o.temperature,
                topK: o.top_k,
                topP: o.top_p,
                minP: o.min_p,
                seed: o.seed >= 0 ? o.seed : undefined,
                repeatPenalty: {
                    lastTokens: o.repeat_last_n,
                    penalty: o.repeat_penalty,
                    presencePenalty: o.presence_penalty,
                    frequencyPenalty: o.frequency_penalty,
                },
            },
        };
    }

    /** The grammar for Ollama's `format`: none, "json", or a JSON Schema object. */
    async grammar(format) {
        if (format === undefined || format === null || format === "") return undefined;
        if (format === "json") return this.cachedGrammar("json", () => this.llama.getGrammarFor("json"));
        if (typeof format !== "object" || Array.isArray(format)) {
            throw new ApiError(500, `invalid format: ${JSON.stringify(JSON.stringify(format))}; expected "json" or a valid JSON Schema object`);
        }
        const key = JSON.stringify(format);
        try {
            return await this.cachedGrammar(key, () => this.llama.createGrammarForJsonSchema(boundIntegers(format)));
        } catch (err) {
            throw new ApiError(500, `invalid JSON schema in format: ${err.message}`);
        }
    }

    async cachedGrammar(key, make) {
        let grammar = this.grammars.get(key);
        if (!grammar) {
            grammar = await make();
            if (this.grammars.size >= 32) this.grammars.delete(this.grammars.keys().next().value);
            this.grammars.set(key, grammar);
        }
        return grammar;
    }

    /** Turns a generate or chat request into chat history (templated) or raw prompt tokens. */
    prepare(kind, body) {
        if (body.think === true || typeof body.think === "string") {
            throw new ApiError(400, `"${body.model}" does not support thinking`);
        }
        if (kind === "generate" && typeof body.suffix === "string" && body.suffix !== "") {
            throw new ApiError(400, `"${body.model}" does not support insert`);
        }
        if (kind === "generate" && body.raw !== true && (body.template || body.context)) {
            // Ollama would render a Go template or replay the deprecated context tokens.
            throw new ApiError(400, "this server does not support template or context: use the model's template and /api/chat");
        }
        if (kind === "generate" && body.raw === true) {
            if (body.system || body.template || body.context) {
                throw new ApiError(400, "raw mode does not support template, system, or context");
            }
            return { raw: true, tokens: this.model.tokenize(String(body.prompt), true) };
        }
        let history;
        if (kind === "generate") {
            history = [];
            if (typeof body.system === "string" && body.system !== "") history.push({ type: "system", text: body.system });
            history.push({ type: "user", text: String(body.prompt) }, { type: "model", response: [] });
        } else {
            history = body.messages.map((message, index) => {
                if (message === null || typeof message !== "object" || typeof message.role !== "string") {
                    throw new ApiError(400, `messages[${index}] must be an object with a string role`);
                }
                const text = message.content === undefined || message.content === null ? "" : String(message.content);
                switch (message.role) {
                    case "system": return { type: "system", text };
                    case "user": return { type: "user", text };
                    case "assistant": return { type: "model", response: [text] };
                    default: throw new ApiError(400, `messages[${index}]: unsupported role "${message.role}" (system, user, assistant)`);
                }
            });
            // Like Ollama, a trailing assistant message is continued rather than answered.
            if (history.at(-1).type !== "model") history.push({ type: "model", response: [] });
        }
        const { contextText } = this.chatWrapper.generateContextState({ chatHistory: history });
        return { raw: false, history, promptTokens: contextText.tokenize(this.model.tokenizer).length };
    }

    /**
     * Generates under the single slot. Calls onText for each piece of text and returns the
     * final text, done reason and Ollama's metrics (nanoseconds).
     */
    async generate(kind, body, received, onText, signal) {
        const opts = this.options(body.options);
        const grammar = await this.grammar(body.format);
        const prepared = this.prepare(kind, body);
        const promptTokens = prepared.raw ? prepared.tokens.length : prepared.promptTokens;
        if (promptTokens >= opts.numCtx) {
            throw new ApiError(400, CONTEXT_EXCEEDED, "context_length_exceeded");
        }
        return this.slot.run(async () => {
            if (signal.aborted) throw new ApiError(499, "client disconnected");
            const loadStart = performance.now();
            const runner = await this.runnerFor(opts.numCtx);
            const { sequence } = runner;
            const before = sequence.tokenMeter.getState();
            try {
                const room = opts.numCtx - promptTokens;
                const maxTokens = opts.numPredict > 0 ? Math.min(opts.numPredict, room) : room;
                const generationStart = performance.now();
                let firstToken;
                const common = {
                    ...opts.sampling,
                    maxTokens,
                    grammar,
                    customStopTriggers: opts.stop.length > 0 ? opts.stop : undefined,
                    signal,
                    stopOnAbortSignal: true,
                    onToken: () => {
                        firstToken ??= performance.now();
                    },
                    onTextChunk: onText,
                };
                // Both keep what the sequence already holds up to the first token that differs
                // (node-llama-cpp's adaptStateToTokens) and evaluate only the rest.
                let text;
                let stopReason;
                if (prepared.raw) {
                    const result = await runner.completion.generateCompletionWithMeta(prepared.tokens, common);
                    text = result.response;
                    stopReason = result.metadata.stopReason;
                } else {
                    const result = await runner.chat.generateResponse(prepared.history, common);
                    text = result.response;
                    stopReason = result.metadata.stopReason;
                }
                if (signal.aborted) throw new ApiError(499, "client disconnected");
                const end = performance.now();
                firstToken ??= end;
                // What llama.cpp decoded for this request, as node-llama-cpp meters each batch:
                // tokens decoded without logits are "input" (the prompt tokens not already in the
                // sequence, less the last one), tokens decoded with logits "output" (the last
                // prompt token, then each generated token fed back).
                const used = sequence.tokenMeter.diff(before);
                const ns = (ms) => Math.max(0, Math.round(ms * 1e6));
                return {
                    text,
                    doneReason: stopReason === "maxTokens" ? "length" : "stop",
                    metrics: {
                        total_duration: ns(end - received),
                        load_duration: ns(runner.loadedAt >= loadStart ? runner.loadMs : 0),
                        prompt_eval_count: used.usedInputTokens,
                        prompt_eval_duration: ns(firstToken - generationStart),
                        eval_count: used.usedOutputTokens,
                        eval_duration: Math.max(1, ns(end - firstToken)),
                    },
                };
            } catch (err) {
                // A failure inside llama.cpp may leave the sequence half-evaluated: start the next
                // request from a fresh context rather than trust it.
                if (!(err instanceof ApiError)) await this.dropRunner();
                throw err;
            }
        });
    }

    /**
     * The kept context for `numCtx` tokens: created on the first request, and again (the old
     * one disposed) when a request asks for another `num_ctx`, as Ollama reloads its runner.
     * Its one sequence keeps its evaluated tokens between requests, so a request that starts
     * with tokens the sequence already holds evaluates only the tokens after them.
     */
    async runnerFor(numCtx) {
        if (this.runner?.numCtx === numCtx) return this.runner;
        await this.dropRunner();
        const loadedAt = performance.now();
        const context = await this.model.createContext({
            contextSize: numCtx,
            sequences: 1,
            threads: this.cli.threads,
        });
        const sequence = context.getSequence();
        this.runner = {
            numCtx,
            context,
            sequence,
            chat: new LlamaChat({ contextSequence: sequence, chatWrapper: this.chatWrapper }),
            completion: new LlamaCompletion({ contextSequence: sequence }),
            loadedAt,
            loadMs: performance.now() - loadedAt,
        };
        log(`created a ${numCtx}-token context in ${Math.round(this.runner.loadMs)} ms`);
        return this.runner;
    }

    async dropRunner() {
        const runner = this.runner;
        this.runner = null;
        if (runner) await runner.context.dispose().catch(() => {});
    }
}

function readBody(req) {
    return new Promise((resolve, reject) => {
        const chunks = [];
        let size = 0;
        req.on("data", (chunk) => {
            size += chunk.length;
            if (size > MAX_BODY_BYTES) {
                reject(new ApiError(413, "request body too large"));
                req.destroy();
                return;
            }
            chunks.push(chunk);
        });
        req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
        req.on("error", reject);
    });
}

async function readJson(req) {
    const text = await readBody(req);
    if (text.trim() === "") throw new ApiError(400, "missing request body");
    let body;
    try {
        body = JSON.parse(text);
    } catch (err) {
        throw new ApiError(400, `invalid JSON body: ${err.message}`);
    }
    if (body === null || typeof body !== "object" || Array.isArray(body)) {
        throw new ApiError(400, "request body must be a JSON object");
    }
    return body;
}

function sendJson(res, status, value) {
    const text = JSON.stringify(value);
    res.writeHead(status, {
        "Content-Type": "application/json; charset=utf-8",
        "Content-Length": Buffer.byteLength(text),
    });
    res.end(text);
}

/** /api/generate and /api/chat: Ollama's streaming (NDJSON, the default) or one JSON object. */
async function completionHandler(server, kind, req, res, received) {
    const body = await readJson(req);
    server.requireModel(body.model);
    const model = body.model;
    const createdAt = () => new Date().toISOString();
    const shape = (text) => (kind === "generate"
        ? { response: text }
        : { message: { role: "assistant", content: text } });

    const empty = kind === "generate"
        ? body.prompt === undefined || body.prompt === null || body.prompt === ""
        : body.messages === undefined || body.messages === null || (Array.isArray(body.messages) && body.messages.length === 0);
    if (empty) {
        // Ollama answers an empty request by loading (or, with keep_alive 0, unloading) the model.
        const unload = body.keep_alive === 0 || body.keep_alive === "0" || body.keep_alive === "0s";
        sendJson(res, 200, { model, created_at: createdAt(), ...shape(""), done: true, done_reason: unload ? "unload" : "load" });
        return;
    }
    if (kind === "chat" && !Array.isArray(body.messages)) throw new ApiError(400, "messages must be an array");
    if (kind === "generate" && typeof body.prompt !== "string") throw new ApiError(400, "prompt must be a string");

    const stream = body.stream !== false;
    const aborter = new AbortController();
    res.on("close", () => {
        if (!res.writableFinished) aborter.abort();
    });
    let headersSent = false;
    const onText = stream
        ? (text) => {
            if (text === "") return;
            if (!headersSent) {
                res.writeHead(200, { "Content-Type": "application/x-ndjson" });
                headersSent = true;
            }
            res.write(`${JSON.stringify({ model, created_at: createdAt(), ...shape(text), done: false })}\n`);
        }
        : undefined;
    try {
        const result = await server.generate(kind, body, received, onText, aborter.signal);
        const final = {
            model,
            created_at: createdAt(),
            ...shape(stream ? "" : result.text),
            done: true,
            done_reason: result.doneReason,
            ...result.metrics,
        };
        if (stream) {
            if (!headersSent) res.writeHead(200, { "Content-Type": "application/x-ndjson" });
            res.end(`${JSON.stringify(final)}\n`);
        } else {
            sendJson(res, 200, final);
        }
    } catch (err) {
        if (!headersSent) throw err;
        // After a 200 has started, Ollama reports a failure as one more NDJSON line.
        res.end(`${JSON.stringify({ error: err.message })}\n`);
    }
}

/** OpenAI's `error.type` for a status, as OpenAI's API answers. */
function openAiError(status, err) {
    const type = status >= 500 ? "server_error" : status === 401 ? "authentication_error" : "invalid_request_error";
    return { error: { message: err.message, type, param: null, code: err instanceof ApiError ? err.code : null } };
}

/** One OpenAI chat message as the chat generation takes it: roles system/developer, user, assistant; text content. */
function openAiMessage(message, index) {
    if (message === null || typeof message !== "object" || typeof message.role !== "string") {
        throw new ApiError(400, `messages[${index}] must be an object with a string role`, "invalid_value");
    }
    const roles = { system: "system", developer: "system", user: "user", assistant: "assistant" };
    const role = roles[message.role];
    if (role === undefined) {
        throw new ApiError(400, `messages[${index}]: unsupported role "${message.role}" (system, developer, user, assistant)`, "invalid_value");
    }
    let content = message.content ?? "";
    if (Array.isArray(content)) {
        content = content.map((part, p) => {
            if (part === null || typeof part !== "object" || part.type !== "text" || typeof part.text !== "string") {
                throw new ApiError(400, `messages[${index}].content[${p}]: only text parts are supported`, "invalid_value");
            }
            return part.text;
        }).join("\n");
    }
    if (typeof content !== "string") {
        throw new ApiError(400, `messages[${index}].content must be a string or an array of text parts`, "invalid_type");
    }
    return { role, content };
}

/** OpenAI's `response_format` as Ollama's `format`: a schema object, "json", or none. */
function openAiFormat(responseFormat) {
    if (responseFormat === undefined || responseFormat === null) return undefined;
    switch (responseFormat.type) {
        case "text":
            return undefined;
        case "json_object":
            return "json";
        case "json_schema": {
            const schema = responseFormat.json_schema?.schema;
            if (schema === null || typeof schema !== "object" || Array.isArray(schema)) {
                throw new ApiError(400, "response_format.json_schema.schema must be a JSON Schema object", "invalid_json_schema");
            }
            return schema;
        }
        default:
            throw new ApiError(400, `invalid response_format ${JSON.stringify(responseFormat)}: expected type text, json_object or json_schema`, "invalid_value");
    }
}

/** OpenAI's sampling and length fields as Ollama's options, with OpenAI's defaults (temperature and top_p 1). */
function openAiOptions(body) {
    const options = { temperature: 1, top_p: 1 };
    for (const key of ["temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"]) {
        if (body[key] !== undefined && body[key] !== null) options[key] = body[key];
    }
    for (const key of ["max_completion_tokens", "max_tokens"]) {
        const limit = body[key];
        if (limit === undefined || limit === null) continue;
        if (!Number.isInteger(limit) || limit < 1) {
            throw new ApiError(400, `${key} must be a positive integer, got ${JSON.stringify(limit)}`, "invalid_value");
        }
        options.num_predict ??= limit;
    }
    if (body.stop !== undefined && body.stop !== null) {
        options.stop = typeof body.stop === "string" ? [body.stop] : body.stop;
    }
    return options;
}

let completionCount = 0;

/**
 * POST /v1/chat/completions: OpenAI's chat completions (not streamed) over the same chat
 * generation as /api/chat, answered as OpenAI answers, with `usage` and `finish_reason`.
 */
async function chatCompletionsHandler(server, req, res, received) {
    const body = await readJson(req);
    if (body.stream === true) {
        throw new ApiError(400, 'this server does not stream /v1/chat/completions; send "stream": false', "unsupported_value");
    }
    if (body.n !== undefined && body.n !== null && body.n !== 1) {
        throw new ApiError(400, "only n = 1 is supported", "unsupported_value");
    }
    if (body.tools !== undefined && body.tools !== null) {
        throw new ApiError(400, "tools are not supported", "unsupported_parameter");
    }
    server.requireModel(body.model);
    if (!Array.isArray(body.messages) || body.messages.length === 0) {
        throw new ApiError(400, "messages must be a non-empty array", "invalid_value");
    }
    const chat = {
        model: body.model,
        messages: body.messages.map(openAiMessage),
        format: openAiFormat(body.response_format),
        options: openAiOptions(body),
    };
    try {
        await server.grammar(chat.format);
    } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        // A schema the grammar converter cannot use is the request's fault, as OpenAI says it.
        throw new ApiError(400, err.message.replace("in format", "in response_format"), "invalid_json_schema");
    }
    const aborter = new AbortController();
    res.on("close", () => {
        if (!res.writableFinished) aborter.abort();
    });
    const result = await server.generate("chat", chat, received, undefined, aborter.signal);
    completionCount += 1;
    sendJson(res, 200, {
        id: `chatcmpl-${completionCount}`,
        object: "chat.completion",
        created: Math.floor(Date.now() / 1000),
        model: body.model,
        system_fingerprint: "fp_enrich_model_server",
        choices: [{
            index: 0,
            message: { role: "assistant", content: result.text },
            logprobs: null,
            finish_reason: result.doneReason === "length" ? "length" : "stop",
        }],
        usage: {
            prompt_tokens: result.metrics.prompt_eval_count,
            completion_tokens: result.metrics.eval_count,
            total_tokens: result.metrics.prompt_eval_count + result.metrics.eval_count,
        },
    });
}

async function route(server, req, res, received) {
    const path = new URL(req.url, "http://localhost").pathname;
    const key = `${req.method} ${path}`;
    switch (key) {
        case "GET /":
        case "HEAD /":
            res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8" });
            res.end(req.method === "HEAD" ? undefined : "Ollama is running");
            return;
        case "GET /api/version":
            sendJson(res, 200, { version: OLLAMA_API_VERSION });
            return;
        case "GET /api/tags":
            sendJson(res, 200, server.tags());
            return;
        case "GET /api/ps":
            sendJson(res, 200, server.ps());
            return;
        case "POST /api/show":
            sendJson(res, 200, server.show(await readJson(req)));
            return;
        case "POST /api/generate":
            await completionHandler(server, "generate", req, res, received);
            return;
        case "POST /api/chat":
            await completionHandler(server, "chat", req, res, received);
            return;
        case "GET /v1/models":
            sendJson(res, 200, server.openAiModels());
            return;
        case "POST /v1/chat/completions":
            await chatCompletionsHandler(server, req, res, received);
            return;
        case "POST /tokenize":
            sendJson(res, 200, server.tokenize(await readJson(req)));
            return;
        default:
            res.writeHead(404, { "Content-Type": "text/plain" });
            res.end("404 page not found");
    }
}

async function main() {
    const cli = parseCli(process.argv.slice(2));
    const server = await ModelServer.start(cli);
    const httpServer = http.createServer((req, res) => {
        const received = performance.now();
        route(server, req, res, received)
            .catch((err) => {
                const status = err instanceof ApiError ? err.status : 500;
                if (!(err instanceof ApiError)) log(`error: ${err.stack ?? err}`);
                if (res.headersSent) {
                    res.destroy();
                } else if (new URL(req.url, "http://localhost").pathname.startsWith("/v1/")) {
                    sendJson(res, status, openAiError(status, err));
                } else {
                    sendJson(res, status, { error: err.message });
                }
            })
            .finally(() => {
                log(`${req.method} ${req.url} ${res.statusCode} ${Math.round(performance.now() - received)} ms`);
            });
    });
    httpServer.keepAliveTimeout = 60_000;
    const shutdown = async (why) => {
        log(`shutting down (${why})`);
        httpServer.close();
        httpServer.closeAllConnections();
        await server.llama.dispose().catch(() => {});
        process.exit(0);
    };
    process.on("SIGTERM", () => shutdown("SIGTERM"));
    process.on("SIGINT", () => shutdown("SIGINT"));
    if (cli.exitOnStdinClose) {
        process.stdin.on("end", () => shutdown("stdin closed"));
        process.stdin.on("error", () => shutdown("stdin closed"));
        process.stdin.resume();
    }
    httpServer.listen(cli.port, cli.host, () => {
        const { address, port } = httpServer.address();
        const host = address.includes(":") ? `[${address}]` : address;
        process.stdout.write(`${JSON.stringify({ listening: `http://${host}:${port}` })}\n`);
    });
}

main().catch((err) => {
    log(`error: ${err.message}`);
    process.exit(1);
});

/**
 * Ollama (llama.cpp's schema-to-grammar converter) honours `minimum`/`maximum` on integers;
 * node-llama-cpp's converter does not. Rewrite a bounded integer schema into the `enum` of its
 * values (up to 4096 of them) so this server constrains the output the way Ollama does.
 */
function boundIntegers(schema) {
    if (Array.isArray(schema)) return schema.map(boundIntegers);
    if (schema === null || typeof schema !== "object") return schema;
    const out = {};
    for (const [key, value] of Object.entries(schema)) out[key] = boundIntegers(value);
    if (out.type === "integer" && Number.isInteger(out.minimum) && Number.isInteger(out.maximum)
        && out.maximum >= out.minimum && out.maximum - out.minimum < 4096) {
        const values = [];
        for (let n = out.minimum; n <= out.maximum; n++) values.push(n);
        return { enum: values };
    }
    return out;
}
