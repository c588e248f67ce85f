/**
 * A process in a sandbox as the CLI shows it: its output forwarded as it
 * comes, its exit as a shell reports it.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { signalNumber } from "../../internal/signals.js"
import type { OutputChunk, ProcessHandle } from "../../ProcessManager.js"

/**
 * Writes a process's output as it comes: raw, or with `--json` as `output` events.
 *
 * @since 0.1.0
 * @category output
 */
export const forward = (output: Stream.Stream<OutputChunk>, json: boolean) =>
  Stream.runForEach(output, (chunk) =>
    Effect.sync(() => {
      if (json) {
        process.stdout.write(
          JSON.stringify({ event: "output", source: chunk.source, text: chunk.text }) + "\n"
        )
      } else {
        ;(chunk.source === "stderr" ? process.stderr : process.stdout).write(chunk.text)
      }
    })
  )

/**
 * A process's exit as a shell reports it: its code, or 128 + the signal's number.
 *
 * @since 0.1.0
 * @category output
 */
export const exitCodeOf = (handle: ProcessHandle) =>
  Effect.map(handle.awaitExit, (status) =>
    status._tag === "Exited" ? status.code : 128 + (signalNumber(status.signal) ?? 0)
  )
