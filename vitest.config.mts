import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Native calls use both cores: running test files in parallel would only make them fight for them.
    fileParallelism: false,
  },
});
