import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // The CLI tests run the built binary: built here when dist/ is not the
    // sources' build.
    globalSetup: ["test/support/globalSetup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Real daemons share two cores: run test files one after another.
    fileParallelism: false,
    // The library logs as it works (INFO and up): shown for failing tests
    // only, where they tell what happened.
    silent: "passed-only"
  }
})
