/** `npm run bench -- speed --profile`: a perf profile of our x-update (top symbols), attaching `perf record` to this process. */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { GPT2Model } from "../../ts/advanced";
import { makeInputs, PAPER, SHAPE, type ModelChoice } from "./models";
import { Ours } from "./ours";

export async function profileOurXUpdate(m: ModelChoice, tmp: string, log: (s: string) => void): Promise<{ symbol: string; percent: number }[] | undefined> {
  const perf = ["/usr/bin/perf", "/usr/local/bin/perf"].find((p) => fs.existsSync(p));
  if (!perf) return undefined;
  const loader = GPT2Model.load(m.dir);
  const inp = makeInputs(m, loader, path.join(tmp, `${m.name}-profile.safetensors`), { B: SHAPE.B, free: SHAPE.free, n: SHAPE.n, prefix: SHAPE.prefix });
  loader.dispose();
  const ours = new Ours(m, inp, PAPER);
  try {
    await ours.setup();
    await ours.fEval();
    const data = path.join(tmp, "perf.data");
    const { spawn } = await import("node:child_process");
    const rec = spawn(perf, ["record", "-F", "999", "-g", "-o", data, "-p", String(process.pid)], { stdio: "ignore" });
    await new Promise((r) => setTimeout(r, 500));
    log("profiling 10 x-update steps with perf…");
    await ours.xUpdate(10);
    const done = new Promise((r) => rec.on("exit", r));
    rec.kill("SIGINT");
    await done;
    const rep = spawnSync(perf, ["report", "-i", data, "--no-children", "--sort", "symbol", "--stdio", "--percent-limit", "1"], { encoding: "utf8", maxBuffer: 64 << 20 });
    const rows: { symbol: string; percent: number }[] = [];
    for (const line of rep.stdout.split("\n")) {
      const mm = /^\s+([\d.]+)%\s+\[[.k]\]\s+(.+?)\s*$/.exec(line);
      if (mm) rows.push({ percent: Number(mm[1]), symbol: cleanSymbol(mm[2]) });
    }
    return rows.slice(0, 15);
  } catch (e) {
    log(`perf profile failed: ${(e as Error).message}`);
    return undefined;
  } finally {
    ours.dispose();
  }
}

/** "std::_Function_handler<…, gradmm::gelu_forward<float>(…)::{lambda…}>::_M_invoke" → "gradmm::gelu_forward<float> (parallel_for body)". */
function cleanSymbol(raw: string): string {
  const s = raw.replace(/(\s+-)+\s*$/, "").trim();
  const body = /_Function_handler<.*?,\s*([\w:]+(?:<[^<>()]*>)?)\(/.exec(s);
  return body ? `${body[1]} (parallel_for body)` : s;
}

