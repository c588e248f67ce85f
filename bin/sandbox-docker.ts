#!/usr/bin/env node
/**
 * The `sandbox-docker` executable.
 *
 * @since 0.1.0
 */
import { main } from "../src/cli/main.js"

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code
})
