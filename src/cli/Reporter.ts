/**
 * How the CLI shows what happens: a line per phase with the elapsed time,
 * readable in a CI log, or with `--json` one JSON object per line, each with
 * an `event` field.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import type { DaemonEvent } from "../DaemonEvent.js"
import { formatMillis } from "../internal/duration.js"
import { describe } from "../ProcessStatus.js"

/**
 * An error as the CLI reports it: tagged, with a message and its fields.
 *
 * @since 0.1.0
 * @category models
 */
export interface ReportableError {
  readonly _tag: string
  readonly message: string
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Reporter {
  readonly event: (event: DaemonEvent) => Effect.Effect<void>
  readonly error: (error: ReportableError) => Effect.Effect<void>
  readonly info: (
    event: string,
    fields: Record<string, unknown>,
    text: string
  ) => Effect.Effect<void>
}

const kebab = (tag: string): string =>
  tag.replace(/[a-z][A-Z]/g, (m) => `${m[0]}-${m[1]}`).toLowerCase()

const write = (stream: NodeJS.WriteStream, line: string) =>
  Effect.sync(() => void stream.write(line + "\n"))

/** The fields of an error worth printing, without its tag and stack. */
const fieldsOf = (error: ReportableError): Record<string, unknown> => {
  const fields: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(error)) {
    if (key !== "_tag" && key !== "stack" && key !== "message") fields[key] = value
  }
  return fields
}

const human = (event: DaemonEvent): string | undefined => {
  switch (event._tag) {
    case "Replacing":
      return `replacing the dockerd already running (pid ${event.pid}, found by its ${event.foundBy}): stopping it`
    case "Preflight":
      return "preflight ok"
    case "Spawned":
      return `spawned pid ${event.pid}: ${event.argv.join(" ")}`
    case "Probe":
      return event.outcome._tag === "ProbeSucceeded"
        ? `probe ${event.outcome.probe}: ok (attempt ${event.attempt})`
        : `probe ${event.outcome.message} (attempt ${event.attempt})`
    case "Ready":
      return `ready: pid ${event.pid}, socket ${event.socket}, Docker ${event.serverVersion} (API ${event.apiVersion}, ${event.storageDriver}), ${event.attempts} attempts${event.restarts > 0 ? `, restart ${event.restarts}` : ""}`
    case "LivenessFailed":
      return `liveness check failed (${event.consecutive}/${event.threshold}): ${event.reason}`
    case "Restarting":
      return `restarting (${event.restart}/${event.maxRestarts}) in ${formatMillis(event.delayMs)}: ${event.reason}`
    case "Stopping":
      return `stopping pid ${event.pid}`
    case "Stopped":
      return `stopped pid ${event.pid} (${describe(event.status)}) in ${formatMillis(event.elapsedMs)}`
  }
}

/**
 * A reporter writing to stdout (and, for human errors, stderr). Probe
 * results are shown only when a probe's outcome changes, so a long wait
 * stays readable.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: { readonly json: boolean }): Reporter => {
  const started = Date.now()
  const lastProbe = new Map<string, string>()
  const stamp = () => `[${formatMillis(Date.now() - started).padStart(7)}]`
  const emit = (name: string, fields: Record<string, unknown>, text: string | undefined) =>
    options.json
      ? write(process.stdout, JSON.stringify({ event: name, ...fields }))
      : text === undefined
        ? Effect.void
        : write(process.stdout, `${stamp()} ${text}`)
  return {
    event: (event) => {
      if (event._tag === "Probe") {
        const key =
          event.outcome._tag === "ProbeSucceeded"
            ? "ok"
            : `${event.outcome._tag}:${"reason" in event.outcome ? event.outcome.reason : ""}`
        if (lastProbe.get(event.outcome.probe) === key) return Effect.void
        lastProbe.set(event.outcome.probe, key)
      }
      const { _tag, ...fields } = event
      return emit(kebab(_tag), fields, human(event))
    },
    error: (error) =>
      options.json
        ? write(
            process.stdout,
            JSON.stringify({
              event: "error",
              error: error._tag,
              message: error.message,
              ...fieldsOf(error)
            })
          )
        : write(process.stderr, `${stamp()} error: ${error.message}`),
    info: (name, fields, text) => emit(name, fields, text)
  }
}
