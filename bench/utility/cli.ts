/** The `utility` subcommand's body: progress bar on stderr (log lines without a TTY), Ctrl-C, the table on stdout. */
import { MultiBar } from "cli-progress";
import { AbortError } from "../../ts/index";
import { loadUtilityConfig } from "./config";
import { formatMarkdown } from "./report";
import { runUtility, type UtilityProgress } from "./run";

export interface UtilityCliOptions {
  resume?: boolean;
  overwrite?: boolean;
  json?: boolean;
  progress: boolean;
  model?: string;
  output?: string;
}

function formatDuration(ms: number): string {
  const m = Math.round(ms / 60000);
  return m < 60 ? `${m} min` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

export async function utilityCommand(file: string, o: UtilityCliOptions): Promise<void> {
  const config = loadUtilityConfig(file, { model: o.model, output: o.output });
  const controller = new AbortController();
  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write("\nstopping after the current step (finished units are saved; Ctrl-C again to quit now)…\n");
    controller.abort();
  };
  process.on("SIGINT", onSigint);
  const tty = o.progress && process.stderr.isTTY;
  const bars = tty
    ? new MultiBar({ stream: process.stderr, format: "utility |{bar}| {percentage}% | ETA {eta_formatted} | {stage}", hideCursor: true, etaBuffer: 200, fps: 5, clearOnComplete: false })
    : null;
  const bar = bars?.create(1, 0, { stage: "starting" });
  let lastLine = 0;
  let startDone: number | null = null;
  let startTime = Date.now();
  const onProgress = (p: UtilityProgress) => {
    if (p.kind === "log") {
      if (bars) bars.log(p.message + "\n");
      else process.stderr.write(p.message + "\n");
      return;
    }
    if (bar) {
      bar.setTotal(Math.max(1, Math.round(p.total)));
      bar.update(Math.round(p.done), { stage: p.stage });
    } else if (o.progress && Date.now() - lastLine > 10_000) {
      lastLine = Date.now();
      // ETA from this process's own rate (a resumed run starts its clock at its first new unit of work)
      if (startDone === null) (startDone = p.done), (startTime = Date.now());
      const rate = (p.done - startDone) / Math.max(1, Date.now() - startTime);
      const eta = rate > 0 ? formatDuration((p.total - p.done) / rate) : "?";
      process.stderr.write(`[${((100 * p.done) / Math.max(1, p.total)).toFixed(1)}% done, ${((100 * (p.total - p.done)) / Math.max(1, p.total)).toFixed(1)}% left, ETA ${eta}] ${p.stage}\n`);
    }
  };
  try {
    const r = await runUtility(config, { resume: o.resume, overwrite: o.overwrite, signal: controller.signal, onProgress });
    bars?.stop();
    if (o.json) process.stdout.write(JSON.stringify(r.report) + "\n");
    else process.stdout.write(formatMarkdown(r.report) + "\n");
    process.stderr.write(`wrote report.json, report.md, report.html, accuracy-<mode>.svg and trajectories.svg to ${r.outputDir}\n`);
  } catch (e) {
    bars?.stop();
    if (e instanceof AbortError) {
      process.stderr.write(`stopped. Finished units are saved in ${config.resolved.outputDir}; continue with --resume\n`);
      process.exit(130);
    }
    throw e;
  } finally {
    process.off("SIGINT", onSigint);
  }
}
