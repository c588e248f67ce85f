/**
 * Stand-in processes for the bench's waits, where the waits are about probes.
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type { ProcessHandle } from "../../src/ProcessManager.js"
import { Running } from "../../src/ProcessStatus.js"

/** A process that runs forever and prints nothing. */
export const forever: ProcessHandle = {
  pid: 1,
  argv: ["stand-in"],
  status: Effect.succeed(new Running()),
  awaitExit: Effect.never,
  output: Stream.empty,
  logTail: Effect.succeed([]),
  signal: () => Effect.succeed(false)
}
