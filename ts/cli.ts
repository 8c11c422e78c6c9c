#!/usr/bin/env node
/**
 * gradmm CLI. `gradmm init data.csv` writes a starter config from one's own data; `gradmm synth config.yaml` (npm run
 * synth -- config.yaml) writes synthetic data and report.html; `gradmm report RUN` writes report.html again;
 * `gradmm eval config.yaml` runs the utility benchmark; `gradmm doctor` prints what a bug report needs;
 * `gradmm fetch-model NAME` downloads a known model into the cache and `gradmm models` lists what the cache holds.
 * Progress and logs go to stderr; stdout carries only results (--json).
 */
import * as os from "node:os";
import { Command, CommanderError, InvalidArgumentError } from "commander";
import { MultiBar, Presets, SingleBar } from "cli-progress";
import { AbortError, EXIT_CODES, GradmmError, exitCodeOf, typedEngineError } from "./errors";
import * as fs from "node:fs";
import { applyOverrides, loadConfigFile } from "./gradmm/config";
import { initPaths, proposeConfig, starterConfigYaml } from "./gradmm/init";
import { synthesize, validateRun, type SynthProgress } from "./gradmm/synthesize";
import { registerQueueCommands } from "./queue/cli";
import { bf16Support, getThreads, sgemmKernel } from "./threads";
import { native } from "./native";
import { KNOWN_MODELS, knownModel, listCachedModels, modelCacheDir } from "./registry";
import { fetchModel, type FetchProgress } from "./fetch_model";

const program = new Command("gradmm")
  .description("synthetic training text by gradient matching (GRADMM)")
  .option("--debug", "print stack traces with errors (also GRADMM_DEBUG=1)")
  .addHelpText(
    "after",
    `
Start from your own labelled data (JSONL or CSV):
  gradmm init data.csv -o run.yaml        # detects the text and label fields and the classes; edit the label words
  gradmm synth run.yaml --dry-run         # checks config, data, model, label words, memory, output folder
  gradmm synth run.yaml -o runs/mine      # synthetic.jsonl, filtered.jsonl, report.json and report.html
  gradmm report runs/mine                 # report.html again (curves, histograms, the filter's decisions)

Real models: gradmm fetch-model smollm2-135m-instruct, then --model smollm2-135m-instruct (gradmm models lists them).
Does the synthetic text train a classifier? gradmm eval bench/utility/imdb.yaml (GRADMM vs real data and baselines).

Progress goes to stderr (bars on a terminal, plain log lines otherwise); --json prints results on stdout.
Exit codes: ${EXIT_CODES.ok} success, ${EXIT_CODES.usage} usage error, ${EXIT_CODES.input} bad input (config, data, model, output folder, checkpoint), ${EXIT_CODES.interrupted} interrupted (Ctrl-C), ${EXIT_CODES.internal} internal error (a bug: run again with --debug and report it).`,
  )
  .exitOverride()
  .configureOutput({ writeErr: (str) => process.stderr.write(str) });

/** A non-negative integer option value, else a usage error (exit 2). */
function precisionOption(v: string): string {
  if (!["float32", "bf16", "auto"].includes(v)) throw new InvalidArgumentError("--precision expects float32, bf16 or auto.");
  return v;
}

function intOption(name: string) {
  return (v: string): number => {
    if (!/^\d+$/.test(v.trim())) throw new InvalidArgumentError(`${name} expects a whole number (0 = all cores).`);
    return Number(v);
  };
}

program
  .command("synth")
  .summary("make synthetic text from a config (writes synthetic.jsonl, filtered.jsonl, report.json, report.html)")
  .description(
    "Make synthetic training text by gradient matching: per class, the mean gradient of the private examples is the target; ADMM batches of text are optimised to match it, decoded, filtered (label agreement, matching loss, balance, de-duplication) and written to the output folder with report.json and report.html. Everything is validated before any compute or write; Ctrl-C keeps the finished batches (continue with --resume).",
  )
  .argument("<config>", "YAML config (gradmm init data.csv writes one; see examples/imdb.yaml)")
  .option("-o, --output <dir>", "output folder (overrides the config's output; relative to the current folder)")
  .option("--threads <n>", "CPU threads (overrides the config's threads; 0 = all cores)", intOption("--threads"))
  .option("--model <name|path>", "the model (overrides the config's model): a known name (gradmm models), a GGUF file or a Hugging Face folder")
  .option("--precision <p>", "the model's big products (overrides the config's precision): float32 (exact), bf16 (needs AVX512_BF16), auto", precisionOption)
  .option("--resume", "continue the run in the output folder")
  .option("--overwrite", "replace a previous run in the output folder")
  .option("--json", "print one JSON summary on stdout")
  .option("--no-progress", "no progress bars (log lines only)")
  .option("--no-report", "do not write report.html (gradmm report writes it later)")
  .option("--dry-run", "validate the config, data, model, label words and output folder, then exit (nothing is computed or written)")
  .option("--queue <url>", "run the batches on `gradmm worker`s through Redis: redis://[:password@]host:port[/db], rediss:// for TLS (README: \"Many machines\")")
  .option("--queue-name <name>", "the BullMQ queue the workers take from", "gradmm")
  .addHelpText("after", "\nExamples:\n  gradmm synth examples/quick.yaml -o /tmp/quick --threads 2\n  gradmm synth examples/imdb.yaml --model smollm2-135m-instruct --json\n  gradmm synth run.yaml --resume          # after Ctrl-C")
  .action(async (file: string, o: { output?: string; threads?: number; model?: string; precision?: string; resume?: boolean; overwrite?: boolean; json?: boolean; progress: boolean; report: boolean; dryRun?: boolean; queue?: string; queueName: string }) => {
    if (o.resume && o.overwrite) throw new CommanderError(EXIT_CODES.usage, "gradmm.usage", "error: --resume and --overwrite cannot be used together");
    const config = applyOverrides(loadConfigFile(file), { output: o.output, threads: o.threads, model: o.model, precision: o.precision });
    if (o.dryRun) {
      const v = await validateRun(config, { resume: o.resume, overwrite: o.overwrite, onProgress: (p) => "message" in p && process.stderr.write(p.message + "\n") });
      if (o.json) process.stdout.write(JSON.stringify({ valid: true, warnings: v.warnings }) + "\n");
      else process.stderr.write(`${file}: valid${v.warnings.length ? ` (${v.warnings.length} warning${v.warnings.length > 1 ? "s" : ""})` : ""}\n`);
      return;
    }
    const controller = new AbortController();
    let interrupted = false;
    let saved = 0;
    process.on("SIGINT", () => {
      if (interrupted) process.exit(EXIT_CODES.interrupted);
      interrupted = true;
      process.stderr.write(
        saved
          ? `\nstopping: the ${saved} finished batch${saved > 1 ? "es are" : " is"} saved; the batch in progress is dropped (Ctrl-C again to quit now)…\n`
          : "\nstopping: no batch has finished yet, so nothing will be saved (Ctrl-C again to quit now)…\n",
      );
      controller.abort();
    });
    const tty = o.progress && process.stderr.isTTY;
    const bars = tty ? new MultiBar({ clearOnComplete: false, hideCursor: true, format: "{name} |{bar}| {value}/{total} {info} ETA {eta_formatted}" }, Presets.shades_grey) : null;
    const overall = bars?.create(1, 0, { name: "batches", info: "" });
    const current = bars?.create(config.method.outer_steps, 0, { name: "ADMM   ", info: "" });
    let lastLogged = 0;
    const STEP_NAMES = { target: "targets", init: "init", real: "real stats", filter: "filter", report: "report" } as const;
    let stepBar: ReturnType<MultiBar["create"]> | null = null;
    const onProgress = (p: SynthProgress) => {
      if (p.phase === "step") {
        const name = STEP_NAMES[p.step].padEnd(7);
        if (bars) {
          if (p.done === 0 || !stepBar) {
            if (stepBar) bars.remove(stepBar);
            stepBar = bars.create(p.total, p.done, { name, info: "" });
          } else stepBar.update(p.done);
          if (p.done >= p.total && stepBar) stepBar.update(p.total);
        } else if (o.progress || p.done === 0) {
          if (p.step === "init") {
            if (p.done === 0) process.stderr.write(`init: trying ${p.total} initial candidates\n`);
          } else if (p.done < p.total) process.stderr.write(`${STEP_NAMES[p.step]}: ${p.done}/${p.total}${p.total > 1 ? "" : " (started)"}\n`);
        }
        return;
      }
      if (p.phase === "batch" || p.phase === "batch-done") saved = p.batchesDone;
      if (p.phase === "batch") {
        overall?.setTotal(p.batchesTotal);
        overall?.update(p.batchesDone);
        current?.update(p.outer, { info: `class ${p.cls} batch ${p.batch} f(x)=${p.xLoss.toFixed(4)} f(z)=${p.zLoss.toFixed(4)}` });
        if (!bars && (Date.now() - lastLogged > 5000 || p.outer === p.outerSteps)) {
          lastLogged = Date.now();
          process.stderr.write(`[${p.batchesDone}/${p.batchesTotal}] class ${p.cls} batch ${p.batch}: outer ${p.outer}/${p.outerSteps} f(x)=${p.xLoss.toFixed(4)} f(z)=${p.zLoss.toFixed(4)}\n`);
        }
      } else if (p.phase === "batch-done") {
        overall?.update(p.batchesDone);
        current?.update(0);
      } else if (bars) bars.log(p.message + "\n");
      else process.stderr.write(p.message + "\n");
    };
    try {
      const r = await synthesize(config, { signal: controller.signal, onProgress, resume: o.resume, overwrite: o.overwrite, batchRunner: o.queue ? (await import("./queue/coordinator")).queueBatchRunner({ url: o.queue, queueName: o.queueName }) : undefined, htmlReport: o.report });
      bars?.stop();
      const html = o.report ? `${r.outputDir}/report.html` : null;
      const summary = { output: r.outputDir, synthetic: r.samples.length, filtered: r.filtered.length, report: html, classes: r.report.classes };
      if (o.json) process.stdout.write(JSON.stringify(summary) + "\n");
      else process.stderr.write(`wrote ${r.samples.length} synthetic and ${r.filtered.length} filtered samples to ${r.outputDir}${html ? `; open ${html}` : ""}\n`);
    } catch (e) {
      bars?.stop();
      if (e instanceof AbortError) {
        process.stderr.write(
          saved
            ? `stopped. ${saved} finished batch${saved > 1 ? "es are" : " is"} saved in ${config.resolved.outputDir}; continue with --resume\n`
            : `stopped before the first batch finished; nothing was saved\n`,
        );
        process.exit(EXIT_CODES.interrupted);
      }
      throw e;
    }
  });

registerQueueCommands(program);

program
  .command("doctor")
  .description("print the engine's backend, threads and build facts (paste it into bug reports)")
  .action(() => {
    const b = native().backendInfo();
    const bf = bf16Support();
    const gpu = b.devices[0];
    const info = {
      backend: b.chosen,
      backend_reason: b.reason,
      ...(b.note ? { backend_note: b.note } : {}),
      gpu: gpu ? gpu.name : null,
      gpu_memory_gib: gpu ? +(gpu.memory / 2 ** 30).toFixed(1) : null,
      gpu_compute_capability: gpu ? gpu.computeCapability : null,
      gpu_count: b.devices.length,
      build: { cuda: b.build.cuda, cublas: b.build.cublas, cuda_archs: b.build.archs || null, cuda_runtime: b.build.cudaRuntime },
      sgemm_kernel: sgemmKernel(),
      // precision bf16 (config `precision`, --precision): whether it runs here, on which kernel, else what is missing
      bf16: { available: bf.available, kernel: bf.kernel, ...(bf.missing ? { missing: bf.missing } : {}), cpu_avx512bf16: b.bf16?.cpuAvx512bf16 ?? false },
      precision_auto: bf.available ? "bf16" : "float32",
      threads: getThreads(),
      cpu: os.cpus()[0]?.model,
      cores: os.cpus().length,
      memory_gib: +(os.totalmem() / 2 ** 30).toFixed(1),
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
    };
    process.stdout.write(JSON.stringify(info, null, 2) + "\n");
  });

program
  .command("fetch-model")
  .description("download a known model into the cache (verified by sha256) and print its path; see `gradmm models`")
  .argument("<name>", `a known model (${Object.keys(KNOWN_MODELS).join(", ")})`)
  .option("--json", "print one JSON object on stdout")
  .option("--force", "download again even when a good copy is cached")
  .option("--connect-timeout <seconds>", "how long to wait for the Hugging Face hub to answer", "10")
  .option("--no-progress", "no progress bar (log lines only)")
  .action(async (name: string, o: { json?: boolean; force?: boolean; connectTimeout: string; progress: boolean }) => {
    const entry = knownModel(name);
    const controller = new AbortController();
    process.on("SIGINT", () => {
      process.stderr.write("\nstopping (partial downloads are removed)…\n");
      controller.abort();
    });
    const tty = o.progress && process.stderr.isTTY;
    let bar: SingleBar | null = null;
    let barPhase = "";
    let lastLogged = -1;
    const mb = (n: number) => (n / 1e6).toFixed(1);
    const stopBar = () => {
      bar?.stop();
      bar = null;
      barPhase = "";
    };
    const onProgress = (p: FetchProgress) => {
      if (p.phase === "try") {
        stopBar();
        process.stderr.write(`fetching ${entry.name} from ${p.source}\n`);
      } else if (p.phase === "failed") {
        stopBar();
        process.stderr.write(`  failed: ${p.message}\n`);
      } else if (p.phase === "verify") {
        stopBar();
      } else if (tty) {
        if (barPhase !== p.phase) {
          stopBar();
          barPhase = p.phase;
          bar = new SingleBar({ format: `${p.phase.padEnd(8)} |{bar}| {percentage}% {done}/{all} MB`, hideCursor: true }, Presets.shades_grey);
          bar.start(p.total ?? 0, 0, { done: "0.0", all: p.total ? mb(p.total) : "?" });
        }
        if (p.total && bar!.getTotal() !== p.total) bar!.setTotal(p.total);
        bar!.update(Math.min(p.done, p.total ?? p.done), { done: mb(p.done), all: p.total ? mb(p.total) : "?" });
      } else {
        // Not a terminal: a line per 10% (or per 10 MB when the size is unknown).
        const step = p.total ? Math.floor((10 * p.done) / p.total) : Math.floor(p.done / 10e6);
        const key = (p.phase === "extract" ? 1000 : 0) + step;
        if (key !== lastLogged) {
          lastLogged = key;
          process.stderr.write(`  ${p.phase}: ${mb(p.done)}${p.total ? `/${mb(p.total)}` : ""} MB\n`);
        }
      }
    };
    try {
      const file = await fetchModel(entry.name, {
        onProgress,
        signal: controller.signal,
        force: o.force,
        connectTimeoutMs: Math.max(1, Number(o.connectTimeout) || 10) * 1000,
      });
      stopBar();
      const rec = listCachedModels().find((m) => m.name === entry.name);
      process.stderr.write(`${entry.name}: ${file} (${entry.bytes} bytes, sha256 ok${rec ? `, from ${rec.source}` : ""})\n`);
      if (o.json) process.stdout.write(JSON.stringify({ name: entry.name, path: file, bytes: entry.bytes, sha256: entry.sha256, source: rec?.source ?? null }) + "\n");
      else process.stdout.write(file + "\n");
    } catch (e) {
      stopBar();
      if (e instanceof AbortError) process.exit(130);
      throw e;
    }
  });

program
  .command("models")
  .description("list the known models and what the cache holds (checks each cached file's sha256)")
  .option("--json", "print JSON on stdout")
  .option("--no-verify", "skip hashing the cached files")
  .action((o: { json?: boolean; verify: boolean }) => {
    const cached = listCachedModels({ verify: o.verify });
    const rows = [
      ...Object.values(KNOWN_MODELS).map((k) => ({ known: k, cached: cached.find((c) => c.name === k.name) ?? null })),
      ...cached.filter((c) => !c.known).map((c) => ({ known: null, cached: c })),
    ];
    if (o.json) {
      const out = rows.map(({ known: k, cached: c }) => ({
        name: k?.name ?? c!.name,
        known: k !== null,
        title: k?.title ?? null,
        architecture: k?.architecture ?? null,
        license: k?.license ?? null,
        file: k?.file ?? c!.file,
        bytes: k?.bytes ?? c!.bytes,
        sha256: k?.sha256 ?? c!.sha256,
        cached: c ? { path: c.path, bytes: c.bytes, sha256Ok: c.sha256Ok ?? null, source: c.source, fetchedAt: c.fetchedAt, problem: c.problem ?? null } : null,
      }));
      process.stdout.write(JSON.stringify({ cache: modelCacheDir(), models: out }, null, 2) + "\n");
      return;
    }
    const table = [["NAME", "FILE", "SIZE", "SHA256", "SOURCE"]];
    for (const { known: k, cached: c } of rows) {
      const sha = !c ? "-" : c.sha256Ok === undefined ? (c.problem ? "bad" : "unchecked") : c.sha256Ok ? "ok" : "BAD";
      table.push([
        (k?.name ?? c!.name) + (k ? "" : " (unknown)"),
        k?.file ?? c!.file,
        c ? `${((c.bytes) / 1e6).toFixed(1)} MB` : "not cached",
        sha,
        c ? c.source : `gradmm fetch-model ${k!.name}`,
      ]);
    }
    const widths = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)));
    process.stdout.write(`cache: ${modelCacheDir()}\n`);
    for (const r of table) process.stdout.write(r.map((v, i) => (i === r.length - 1 ? v : v.padEnd(widths[i]))).join("  ") + "\n");
    for (const { cached: c } of rows) if (c?.problem) process.stdout.write(`${c.name}: ${c.problem}\n`);
  });

program
  .command("report")
  .summary("write report.html of a finished synth run")
  .description(
    "Write <run>/report.html from the run's report.json and synthetic.jsonl: one self-contained page (no network) with the matching loss of x and z per outer step, init → best x → decoded, the gradient cosine of the set to the target, histograms of per-sample matching loss and perplexity against the real examples (not under DP), the filter's decisions in a sortable, searchable table, the DP parameters, settings, model, machine and timings. gradmm synth writes it at the end of every run.",
  )
  .argument("<run>", "a synth run's output folder (holding report.json)")
  .option("--json", "print {\"report\": path} on stdout")
  .action(async (dir: string, o: { json?: boolean }) => {
    const { writeRunReport } = await import("./report/run");
    const file = await writeRunReport(dir);
    if (o.json) process.stdout.write(JSON.stringify({ report: file }) + "\n");
    else process.stdout.write(file + "\n");
  });

program
  .command("init")
  .summary("write a starter config from your own data (CSV or JSONL)")
  .description(
    "Read a labelled CSV or JSONL file, detect the text and label fields and the classes, and write a starter config with proposed label words, a template and instructions, each explained in a comment for you to edit. Check it with gradmm synth CONFIG --dry-run.",
  )
  .argument("<data>", "a labelled .csv (with a header row) or .jsonl file")
  .option("-o, --output <file>", "the config file to write", "gradmm.yaml")
  .option("--text-field <name>", "the text field (default: detected)")
  .option("--label-field <name>", "the label field (default: detected)")
  .option("--quick", "small method settings for a one-minute smoke run")
  .option("--force", "replace an existing config file")
  .option("--json", "print the detected fields and classes as JSON on stdout")
  .addHelpText("after", "\nExample:\n  gradmm init reviews.csv -o reviews.yaml && gradmm synth reviews.yaml --dry-run")
  .action((data: string, o: { output: string; textField?: string; labelField?: string; quick?: boolean; force?: boolean; json?: boolean }) => {
    if (fs.existsSync(o.output) && !o.force) throw new OutputExistsFileError(o.output);
    const p = proposeConfig(data, { textField: o.textField, labelField: o.labelField });
    const { dataPath, output } = initPaths(data, o.output);
    const yaml = starterConfigYaml(p, { dataPath, output, quick: o.quick, source: data });
    fs.writeFileSync(o.output, yaml);
    for (const n of p.notes) process.stderr.write(`note: ${n}\n`);
    process.stderr.write(
      `wrote ${o.output}: text field '${p.textField}', label field '${p.labelField}', ${p.classes.length} classes (${p.classes.map((c) => `${JSON.stringify(c.label)}: ${c.count}`).join(", ")}); edit the label words, template and instructions, then run gradmm synth ${o.output} --dry-run\n`,
    );
    if (o.json)
      process.stdout.write(
        JSON.stringify({ config: o.output, format: p.format, rows: p.rows, fields: p.fields, text_field: p.textField, label_field: p.labelField, classes: p.classes.map((c) => ({ label: c.label, count: c.count, label_word: c.labelWord, instruction: c.instruction })), template: p.template, notes: p.notes }) + "\n",
      );
  });

program
  .command("eval")
  .summary("run the utility benchmark: does the synthetic text train a classifier?")
  .description(
    "The utility benchmark (bench/README.md): for each seed, GRADMM's synthetic set, the real examples, generation baselines and ablations each train a classifier (fine-tuning and/or a linear probe), tested on held-out real data. Writes report.json, report.md and report.html (tables with 95% intervals, plots, samples per method) to the output folder, after every seed.",
  )
  .argument("<config>", "a synth config plus an eval section (bench/utility/imdb.yaml)")
  .option("-o, --output <dir>", "output folder (default: the config's eval.output)")
  .option("--model <name|path>", "the model (generator and classifier): a known name, a GGUF file or a Hugging Face folder")
  .option("--resume", "continue the run in the output folder (finished units are skipped)")
  .option("--overwrite", "replace a previous run in the output folder")
  .option("--json", "print report.json on stdout instead of the Markdown table")
  .option("--no-progress", "no progress bar (log lines only)")
  .action(async (file: string, o: { output?: string; model?: string; resume?: boolean; overwrite?: boolean; json?: boolean; progress: boolean }) => {
    if (o.resume && o.overwrite) throw new CommanderError(EXIT_CODES.usage, "gradmm.usage", "error: --resume and --overwrite cannot be used together");
    const { utilityCommand } = await import("../bench/utility/cli");
    await utilityCommand(file, o);
  });

/** `gradmm init` refuses to replace a config file without --force. */
class OutputExistsFileError extends GradmmError {
  constructor(file: string) {
    super("OUTPUT_EXISTS", `${file} exists; pass --force to replace it or -o to write another file`);
  }
}

/** One line per error (no stack trace unless --debug or GRADMM_DEBUG=1), and the documented exit code. */
function fail(e: unknown): never {
  const debug = process.argv.includes("--debug") || /^(1|true|yes)$/i.test(process.env.GRADMM_DEBUG ?? "");
  if (e instanceof CommanderError) {
    // commander already printed its message (or the help / version)
    process.exit(e.exitCode === 0 || e.code === "commander.helpDisplayed" || e.code === "commander.version" ? 0 : EXIT_CODES.usage);
  }
  const err = typedEngineError(e);
  const code = exitCodeOf(err);
  if (err instanceof GradmmError) {
    process.stderr.write(`gradmm: ${err.name} [${err.code}]: ${err.message}\n`);
    if (debug && err.stack) process.stderr.write(err.stack + "\n");
  } else {
    const msg = err instanceof Error ? `${err.name}: ${err.message.split("\n")[0]}` : String(err);
    process.stderr.write(`gradmm: internal error: ${msg}\n`);
    if (debug) process.stderr.write(((err as Error)?.stack ?? "") + "\n");
    else process.stderr.write("gradmm: this is a bug; run again with --debug (or GRADMM_DEBUG=1) for the stack trace and report it\n");
  }
  process.exit(code);
}

process.on("uncaughtException", fail);
process.on("unhandledRejection", fail);
program.parseAsync(process.argv).catch(fail);
