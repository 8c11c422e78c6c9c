/**
 * Clean, stratified splits. The test set is fixed for the whole run (a separate file, or a seeded held-out split);
 * every seed then draws, from what is left, disjoint private (GRADMM target), dev (lr/checkpoint choice) slices,
 * and the `real` training set from everything but dev and test.
 */
import { readLabelledFile, shuffled, mulberry32 } from "../../ts/advanced";
import type { SynthConfig } from "../../ts/index";

export interface Item {
  /** `file-tag:index`, unique across the files of a run. */
  id: string;
  text: string;
  /** Index into config.classes. */
  cls: number;
}

export function readItems(file: string, synth: SynthConfig, tag: string): Item[] {
  return readLabelledFile(file, {
    format: synth.data.format,
    textField: synth.data.text_field,
    labelField: synth.data.label_field,
    classLabels: synth.classes.map((c) => c.label),
  }).map((e, i) => ({ id: `${tag}:${i}`, text: e.text, cls: e.cls }));
}

/** The form two texts are compared in (duplicates across splits are dropped on it). */
export function normalizeText(t: string): string {
  return t.trim().replace(/\s+/g, " ").toLowerCase();
}

export function countByClass(items: readonly Item[], numClasses: number): number[] {
  const n = new Array<number>(numClasses).fill(0);
  for (const it of items) n[it.cls]++;
  return n;
}

/**
 * `perClass` items of every class, in a seeded order; the rest keep their order. A class with fewer items than
 * asked is an error naming `what`.
 */
export function takeStratified(items: readonly Item[], numClasses: number, perClass: number, rng: () => number, what: string): { taken: Item[]; rest: Item[] } {
  const taken: Item[] = [];
  const chosen = new Set<string>();
  for (let k = 0; k < numClasses; k++) {
    const mine = items.filter((it) => it.cls === k);
    if (mine.length < perClass) throw new RangeError(`${what}: class ${k} has ${mine.length} examples, ${perClass} needed`);
    for (const it of shuffled(mine, rng).slice(0, perClass)) {
      taken.push(it);
      chosen.add(it.id);
    }
  }
  return { taken, rest: items.filter((it) => !chosen.has(it.id)) };
}

/**
 * The fixed test set and the pool the seeds draw from. With a test file, the test set is that file (capped to
 * `testPerClass` per class if given); otherwise `testPerClass` (default 100) per class are held out of the pool.
 * Pool items whose text equals a test text are dropped, so nothing in any training or private set is in test.
 */
export function makeTestSplit(
  pool: readonly Item[],
  testFile: readonly Item[] | null,
  numClasses: number,
  testPerClass: number | null,
  splitSeed: number,
): { test: Item[]; pool: Item[]; droppedDuplicates: number } {
  const rng = mulberry32(splitSeed);
  let test: Item[], rest: Item[];
  if (testFile) {
    const cap = testPerClass ?? Infinity;
    const counts = countByClass(testFile, numClasses);
    test = Number.isFinite(cap) ? takeStratified(testFile, numClasses, Math.min(cap, ...counts), rng, "test file").taken : testFile.slice();
    rest = pool.slice();
  } else {
    const r = takeStratified(pool, numClasses, testPerClass ?? 100, rng, "test split");
    test = r.taken;
    rest = r.rest;
  }
  const testTexts = new Set(test.map((t) => normalizeText(t.text)));
  const kept = rest.filter((it) => !testTexts.has(normalizeText(it.text)));
  return { test, pool: kept, droppedDuplicates: rest.length - kept.length };
}

export interface SeedSplit {
  /** The GRADMM target examples (and the few-shot demonstrations). */
  private: Item[];
  /** Picks learning rates and checkpoints; disjoint from private and from `real`. */
  dev: Item[];
  /** The `real` baseline's training set: random examples of the pool minus dev (private ones included). */
  real: Item[];
}

export function splitForSeed(pool: readonly Item[], numClasses: number, sizes: { private: number; dev: number; train: number }, seed: number): SeedSplit {
  const rng = mulberry32(0x5eed ^ seed);
  const priv = takeStratified(pool, numClasses, sizes.private, rng, "private examples");
  const dev = takeStratified(priv.rest, numClasses, sizes.dev, rng, "dev slice");
  const trainPool = [...priv.taken, ...dev.rest];
  const real = takeStratified(trainPool, numClasses, sizes.train, rng, "real training set").taken;
  return { private: priv.taken, dev: dev.taken, real };
}
