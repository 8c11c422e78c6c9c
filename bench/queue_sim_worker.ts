/**
 * For `npm run bench -- queue`: N BullMQ workers in this one process, each storing a canned result after MS
 * milliseconds instead of computing (the queue's cost alone). Usage: node dist/bench/queue_sim_worker.js URL N MS
 */
import { startWorker, type WorkerHandle } from "../ts/advanced";

async function main() {
  const [url, n, ms] = process.argv.slice(2);
  const handles: WorkerHandle[] = [];
  for (let i = 0; i < Number(n); i++) handles.push(await startWorker({ url, simulateMs: Number(ms), lockMs: 60_000, log: () => {} }));
  process.stderr.write("ready\n");
  const stop = async () => {
    await Promise.all(handles.map((h) => h.close(true)));
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop());
}
void main();
