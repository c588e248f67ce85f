#!/usr/bin/env node
/**
 * The `sandbox-docker` executable.
 *
 * `npm run build` bundles this file with everything it imports into one
 * (esbuild): Node then reads and compiles one file instead of resolving and
 * loading some 300 modules, which took a second or more on a busy machine.
 *
 * SIGINT and SIGTERM are caught from the first line on: loading the CLI still
 * takes a moment, and a signal in that time, before
 * anything was started, ends the CLI with 0 like a stop later does, instead
 * of killing it (130/143).
 *
 * @since 0.1.0
 */
let earlySignal: NodeJS.Signals | undefined
const onEarlySignal = (signal: NodeJS.Signals) => {
  earlySignal ??= signal
}
process.on("SIGINT", onEarlySignal)
process.on("SIGTERM", onEarlySignal)

const { main } = await import("../src/cli/main.js")

if (earlySignal === undefined) {
  // `main` installs its own handlers synchronously, before these go.
  const exit = main(process.argv.slice(2))
  process.off("SIGINT", onEarlySignal)
  process.off("SIGTERM", onEarlySignal)
  void exit.then((code) => {
    process.exitCode = code
  })
} else {
  process.off("SIGINT", onEarlySignal)
  process.off("SIGTERM", onEarlySignal)
  process.exitCode = 0
}
