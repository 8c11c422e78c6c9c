// The two entry points, `gradmm` (ts/index.ts) and `gradmm/advanced` (ts/advanced.ts): the exact names each exports
// (so an addition is deliberate), the same names from the built package by ESM import and CommonJS require, a TSDoc
// comment on every public export, a consumer compiled by tsc against the built types, and bench/ and ts/pretrain/
// importing nothing of ts/ but these two files.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = path.join(__dirname, "..");

const INDEX_VALUES = [
  "AbortError", "CausalLMModel", "ConfigError", "DisposedError", "EngineArgumentError", "GradmmError",
  "InvalidCheckpointError", "InvalidDataError", "InvalidFileError", "KNOWN_MODELS", "KVCache", "ModelFetchError",
  "ModelNotCachedError", "NoBinaryFoundError", "OutputError", "OutputExistsError", "PrecisionError", "ResourceLimitError", "Tokenizer",
  "UnknownModelError", "UnsupportedModelError", "backendInfo", "bf16Support", "fetchModel", "getThreads", "listCachedModels",
  "loadConfigFile", "loadModel", "parseConfig", "readModelConfig", "setThreads", "synthesize", "validateRun",
];
const INDEX_TYPES = [
  "AdamWOptions", "BackendInfo", "BackwardOptions", "Bf16Support", "CachedModel", "CallOptions", "ConfigIssue", "DecodeOptions",
  "EncodeOptions", "FetchOptions", "FetchProgress", "ForwardOptions", "GPT2Config", "Gemma3Config", "KnownModel", "LlamaConfig",
  "LoadModelOptions", "LoadedModel", "ModelConfig", "ModelConfigInput", "ModelInput", "PhiConfig", "Precision",
  "PrecisionOption", "SynthConfig", "SynthOptions", "SynthProgress", "SynthResult",
];
const ADVANCED_VALUES = [
  "EXIT_CODES", "GPT2Model", "QueueError", "alphabeticTokenMask", "analyticGaussianSigma", "applyOverrides",
  "cacheRoot", "cachedModelFile", "checkOutputDir", "checkpointMatches", "classTargets", "classicGaussianSigma", "classifyByLabelWord", "configSchema",
  "continuationLoss", "dataTable", "didYouMean", "dpParameters", "esc", "evaluateWindows", "exitCodeOf", "figure",
  "filterSamples", "findGGUF", "fingerprint", "fingerprintWithFilter", "fmt", "formatZodIssues", "gaussian", "gpt2TokenizerJsonFromFiles", "imdbBitsPerByte",
  "isGGUFFile", "kvTable", "labelTokens", "labelWordRows", "lastPositionLogits", "loadPretrainConfig", "memoryEstimate", "mlpWidth", "mulberry32",
  "native", "openSafetensors", "openSafetensorsDir", "packageRoot", "page", "parseGGUFBuffer", "parseWithSchema", "pickDemonstrations", "pieceTokens",
  "prepareCorpus", "prepareData", "pretrain", "promptPrefix", "proposeConfig", "queueBatchRunner", "readCheckpoint", "readGGUF",
  "readGPT2Config", "readLabelledFile", "readSafetensorsHeader", "readYamlFile", "refreshModelCard",
  "removePreviousRun", "renderRunReport", "resolveModelPath", "runBatch", "sequenceWindows", "sgemmKernel",
  "sha256FileSync", "shuffled", "startTokens", "startWorker", "starterConfigYaml", "strictObject", "summaryFile", "targetRows", "tokenizerFromGGUF",
  "trainByteLevelBPE", "typedEngineError", "unknownKeyMessage", "vegaLiteSvg", "withCancel", "writeFileAtomic",
  "writeJsonAtomic", "writeJsonlAtomic", "writeRunReport", "writeSafetensors", "writeTokenizerJson",
];
const ADVANCED_TYPES = [
  "BatchProgress", "BatchResult", "BatchRunner", "BatchSettings", "ClassSetup", "DPParameters", "FilterDecision",
  "FilterOptions", "GGUFFile", "GGUFTensorInfo", "InitProposal", "NativeBackendInfo", "NativeBatch", "NativeBatchArgs",
  "NativeBuildTargetArgs", "NativeCancelToken", "NativeKVCache", "NativeMatchLossArgs", "NativeMatchTarget",
  "NativeModel", "NativeModelConfig", "NativeModule", "NativeProjectArgs", "PretrainConfig", "QueueRunStats",
  "RunSummary", "SafetensorsReader", "SyntheticSample", "TokenData", "TokenizerJson", "TrainOptions", "VegaLiteSpec",
  "WorkerHandle", "WritableTensor",
];

const sorted = (a: Iterable<string>) => [...a].sort();

/** One program over both entry points' sources: what each exports, value or type, and its documentation. */
function entryExports() {
  const files = ["index", "advanced"].map((f) => path.join(root, "ts", `${f}.ts`));
  const program = ts.createProgram(files, {
    strict: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.CommonJS,
    moduleResolution: ts.ModuleResolutionKind.Node10,
    types: ["node"],
    lib: ["lib.es2022.d.ts", "lib.esnext.disposable.d.ts"],
    skipLibCheck: true,
    noEmit: true,
  });
  const checker = program.getTypeChecker();
  const out: Record<string, { values: string[]; types: string[]; undocumented: string[]; deprecated: string[] }> = {};
  for (const file of files) {
    const exports = checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(file)!)!);
    const entry = { values: [] as string[], types: [] as string[], undocumented: [] as string[], deprecated: [] as string[] };
    for (const s of exports) {
      const target = s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s;
      (target.flags & ts.SymbolFlags.Value ? entry.values : entry.types).push(s.name);
      if (ts.displayPartsToString(target.getDocumentationComment(checker)).trim().length < 10) entry.undocumented.push(s.name);
      if (target.getJsDocTags(checker).some((t) => t.name === "deprecated")) entry.deprecated.push(s.name);
    }
    out[path.basename(file, ".ts")] = entry;
  }
  return out;
}

describe("entry points", () => {
  const exported = entryExports();

  it("gradmm exports exactly the public names, each with a TSDoc comment", () => {
    expect(sorted(exported.index.values)).toEqual(sorted(INDEX_VALUES));
    expect(sorted(exported.index.types)).toEqual(sorted(INDEX_TYPES));
    expect(exported.index.undocumented).toEqual([]);
    expect(exported.index.deprecated).toEqual([]);
  });

  it("gradmm/advanced exports exactly the engine names, none of them again, the legacy names deprecated", () => {
    expect(sorted(exported.advanced.values)).toEqual(sorted(ADVANCED_VALUES));
    expect(sorted(exported.advanced.types)).toEqual(sorted(ADVANCED_TYPES));
    const both = [...INDEX_VALUES, ...INDEX_TYPES].filter((n) => [...ADVANCED_VALUES, ...ADVANCED_TYPES].includes(n));
    expect(both).toEqual([]);
    expect(sorted(exported.advanced.deprecated)).toEqual(["GPT2Model", "readGPT2Config"]);
  });

  it("the source modules give every listed value at run time (vitest's loader)", async () => {
    const index = await import("../ts/index");
    const advanced = await import("../ts/advanced");
    expect(sorted(Object.keys(index))).toEqual(sorted(INDEX_VALUES));
    expect(sorted(Object.keys(advanced))).toEqual(sorted(ADVANCED_VALUES));
    for (const [name, value] of [...Object.entries(index), ...Object.entries(advanced)]) expect(value, name).toBeDefined();
    // the deprecated alias is the class itself, not a copy
    expect(advanced.GPT2Model).toBe(index.CausalLMModel);
  });
});

describe("the built package (dist/, built by npm ci or npm run build:ts)", () => {
  const stale = "dist/ is missing or older than ts/: run `npm run build:ts`";
  const node = (args: string[]) => execFileSync(process.execPath, args, { cwd: root, encoding: "utf8" });

  it("ESM import and CommonJS require give the same names, all defined, for both entry points", () => {
    for (const f of ["index.js", "index.mjs", "index.d.ts", "advanced.js", "advanced.mjs", "advanced.d.ts"])
      expect(fs.existsSync(path.join(root, "dist", "ts", f)), `${stale} (dist/ts/${f})`).toBe(true);
    const list = (api: string) => `Object.keys(${api}).filter((k) => k !== "default" && ${api}[k] !== undefined).sort()`;
    const cjs = JSON.parse(node(["-e", `console.log(JSON.stringify([${list('require("gradmm")')}, ${list('require("gradmm/advanced")')}]))`]));
    const esm = JSON.parse(
      node(["--input-type=module", "-e", `import * as i from "gradmm"; import * as a from "gradmm/advanced"; console.log(JSON.stringify([${list("i")}, ${list("a")}]))`]),
    );
    expect(cjs[0], stale).toEqual(sorted(INDEX_VALUES));
    expect(cjs[1], stale).toEqual(sorted(ADVANCED_VALUES));
    expect(esm).toEqual(cjs);
    // ESM and CommonJS share one instance (one addon, one class identity)
    const same = node(["--input-type=module", "-e", `import { CausalLMModel } from "gradmm"; import { createRequire } from "node:module"; console.log(CausalLMModel === createRequire(import.meta.url)("gradmm").CausalLMModel)`]);
    expect(same.trim()).toBe("true");
  });

  it("ts/pretrain/ modules (which import gradmm/advanced, which re-exports them) load in any order", () => {
    // advanced.ts names the pretrain modules last, so a pretrain module loaded first still finds every engine name.
    for (const first of ["pretrain/train", "pretrain/config", "pretrain/data", "pretrain/export", "pretrain/sample", "advanced", "index"]) {
      const out = node(["-e", `require("./dist/ts/${first}.js"); const a = require("gradmm/advanced"); console.log(Object.keys(a).filter((k) => a[k] === undefined).join(",") || "ok")`]);
      expect(out.trim(), first).toBe("ok");
    }
  });

  describe("a consumer compiled by tsc against the built types", () => {
    let dir: string;
    beforeAll(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-consumer-"));
      fs.mkdirSync(path.join(dir, "node_modules"));
      fs.symlinkSync(root, path.join(dir, "node_modules", "gradmm"), "dir");
      fs.symlinkSync(path.join(root, "node_modules", "@types"), path.join(dir, "node_modules", "@types"), "dir");
      const good = `
import { loadModel, CausalLMModel, synthesize, loadConfigFile, setThreads, backendInfo, InvalidFileError, GradmmError, type SynthConfig, type LoadedModel, type ModelConfig } from "gradmm";
import { native, writeSafetensors, runBatch, GPT2Model, type WritableTensor } from "gradmm/advanced";
export async function use(config: SynthConfig, dirName: string): Promise<number> {
  setThreads(1);
  const info: string = backendInfo().chosen;
  const loaded: LoadedModel = loadModel(dirName);
  const m: CausalLMModel = loaded.model;
  const legacy: CausalLMModel = GPT2Model.load(dirName);
  const c: ModelConfig = m.config;
  const t: WritableTensor = { dtype: "F32", shape: [1], data: new Float32Array(1) };
  writeSafetensors("/dev/null", { t });
  void native; void runBatch; void legacy; void info;
  try { await synthesize(loadConfigFile("x.yaml")); } catch (e) { if (e instanceof InvalidFileError || e instanceof GradmmError) return -1; }
  return c.vocabSize + (config.seed ?? 0);
}
`;
      fs.writeFileSync(path.join(dir, "consumer.ts"), good);
      fs.writeFileSync(path.join(dir, "consumer.mts"), good);
      // an engine piece is not in the public entry point
      fs.writeFileSync(path.join(dir, "wrong.ts"), `import { runBatch } from "gradmm";\nvoid runBatch;\n`);
    });
    afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

    const compile = (file: string, options: ts.CompilerOptions) => {
      const program = ts.createProgram([path.join(dir, file)], {
        strict: true,
        noEmit: true,
        target: ts.ScriptTarget.ES2022,
        lib: ["lib.es2022.d.ts", "lib.esnext.disposable.d.ts"],
        types: ["node"],
        skipLibCheck: true,
        ...options,
      });
      const diagnostics = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
      // what it read of this package (symlinks resolved): it must be the built declarations, never the sources
      const gradmmFiles = program
        .getSourceFiles()
        .map((f) => path.resolve(f.fileName))
        .filter((f) => f.startsWith(root + path.sep) && !f.includes(`${path.sep}node_modules${path.sep}`));
      return { diagnostics, gradmmFiles };
    };

    const modes: [string, string, ts.CompilerOptions][] = [
      ["CommonJS, moduleResolution node10 (typesVersions)", "consumer.ts", { module: ts.ModuleKind.CommonJS, moduleResolution: ts.ModuleResolutionKind.Node10 }],
      ["CommonJS, moduleResolution node16 (exports, require)", "consumer.ts", { module: ts.ModuleKind.Node16, moduleResolution: ts.ModuleResolutionKind.Node16 }],
      ["ESM, moduleResolution nodenext (exports, import)", "consumer.mts", { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext }],
      ["bundler", "consumer.ts", { module: ts.ModuleKind.ESNext, moduleResolution: ts.ModuleResolutionKind.Bundler }],
    ];
    for (const [name, file, options] of modes) {
      it(name, () => {
        const { diagnostics, gradmmFiles } = compile(file, options);
        expect(diagnostics).toEqual([]);
        expect(gradmmFiles).toContain(path.join(root, "dist", "ts", "index.d.ts"));
        expect(gradmmFiles).toContain(path.join(root, "dist", "ts", "advanced.d.ts"));
        expect(gradmmFiles.filter((f) => !f.startsWith(path.join(root, "dist") + path.sep))).toEqual([]);
      });
    }

    it("an engine name imported from gradmm does not compile", () => {
      const { diagnostics } = compile("wrong.ts", { module: ts.ModuleKind.Node16, moduleResolution: ts.ModuleResolutionKind.Node16 });
      expect(diagnostics.join("\n")).toMatch(/has no exported member 'runBatch'/);
    });
  });
});

describe("bench/ and ts/pretrain/ import only the entry points", () => {
  /** Every relative module specifier (static import/export, dynamic import, require) of every .ts file under `dir`. */
  function specifiers(dir: string): { file: string; spec: string }[] {
    const out: { file: string; spec: string }[] = [];
    for (const rel of fs.readdirSync(path.join(root, dir), { recursive: true }) as string[]) {
      if (!rel.endsWith(".ts")) continue;
      const file = path.join(dir, rel);
      const src = fs.readFileSync(path.join(root, file), "utf8");
      const sf = ts.createSourceFile(file, src, ts.ScriptTarget.ES2022, true);
      const visit = (n: ts.Node): void => {
        let spec: ts.Expression | undefined;
        if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier) spec = n.moduleSpecifier;
        else if (ts.isCallExpression(n) && (n.expression.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(n.expression) && n.expression.text === "require")))
          spec = n.arguments[0];
        else if (ts.isImportTypeNode(n) && ts.isLiteralTypeNode(n.argument)) spec = n.argument.literal;
        if (spec && ts.isStringLiteralLike(spec) && spec.text.startsWith(".")) out.push({ file, spec: spec.text });
        ts.forEachChild(n, visit);
      };
      visit(sf);
    }
    return out;
  }

  for (const dir of ["bench", "ts/pretrain"]) {
    it(dir, () => {
      const found = specifiers(dir);
      const targets = found.map(({ file, spec }) => ({ file, spec, target: path.normalize(path.join(path.dirname(file), spec)) }));
      const internal = targets.filter(({ target }) => target.startsWith(`ts${path.sep}`) && !target.startsWith(`${dir}${path.sep}`));
      const offenders = internal.filter(({ target }) => target !== path.join("ts", "index") && target !== path.join("ts", "advanced"));
      expect(offenders.map(({ file, spec }) => `${file}: ${spec}`)).toEqual([]);
      // the scan sees the imports it checks (both entry points are used from here)
      expect(new Set(internal.map(({ target }) => target))).toEqual(new Set([path.join("ts", "index"), path.join("ts", "advanced")]));
    });
  }
});
