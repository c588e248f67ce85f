/**
 * The built `sandbox-docker` run as a user runs it (`node dist/bin/...`),
 * for the CLI tests. `test/support/globalSetup.ts` has made sure the binary
 * is the build of the sources now. A run is over at the child's `close`
 * (its exit and the end of its stdout and stderr), never at its `exit`,
 * when the last lines may still be in the pipes.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createInterface } from "node:readline"
import { expect } from "vitest"

/** The executable `npm run build` makes. */
export const BIN = "dist/bin/sandbox-docker.js"

/** A JSON event the CLI printed (`--json`). */
export type Event = Record<string, unknown>

/** How a run ended. */
export interface Ended {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

/** A CLI run in progress. */
export interface Running {
  readonly child: ChildProcess
  /** Every stdout line so far. */
  readonly lines: Array<string>
  /** Every stderr line so far. */
  readonly stderr: Array<string>
  /** The JSON events among the stdout lines so far. */
  readonly events: Array<Event>
  /** The first event that satisfies `predicate` (rejects if the run ends first). */
  readonly waitFor: (predicate: (event: Event) => boolean) => Promise<Event>
  /** Resolves at the first stderr line equal to `line` (rejects if the run ends first). */
  readonly waitForStderr: (line: string) => Promise<void>
  /** Resolves once the child has exited and its pipes are closed. */
  readonly closed: Promise<Ended>
}

/** Options of {@link start}. */
export interface StartOptions {
  /** Flags for node itself, before the script (`--import` a preload). */
  readonly nodeArgs?: ReadonlyArray<string>
  /** The child's environment (default: this process's). */
  readonly env?: NodeJS.ProcessEnv
  /** Text for the child's standard input, which then ends (default: no standard input). */
  readonly stdin?: string
  /**
   * A command line that runs the CLI as its child (`["sh", "-c", "\"$@\"; true", "sh"]`):
   * the CLI's parent is then that command, not this process.
   */
  readonly via?: ReadonlyArray<string>
}

/** A line of JSON as an event, or undefined. */
export const parseEvent = (line: string): Event | undefined => {
  try {
    const parsed: unknown = JSON.parse(line)
    return typeof parsed === "object" && parsed !== null ? (parsed as Event) : undefined
  } catch {
    return undefined
  }
}

/** Starts `node BIN ...args` (through `via` when given). */
export const start = (args: ReadonlyArray<string>, options: StartOptions = {}): Running => {
  const [command, ...rest] = [
    ...(options.via ?? []),
    process.execPath,
    ...(options.nodeArgs ?? []),
    BIN,
    ...args
  ] as [string, ...Array<string>]
  const child = spawn(command, rest, {
    stdio: [options.stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    env: options.env ?? process.env
  })
  if (options.stdin !== undefined) child.stdin!.end(options.stdin)
  const lines: Array<string> = []
  const stderr: Array<string> = []
  const events: Array<Event> = []
  const waiters = new Set<{ test: () => boolean }>()
  const wake = () => {
    for (const waiter of [...waiters]) if (waiter.test()) waiters.delete(waiter)
  }
  createInterface({ input: child.stdout! }).on("line", (line) => {
    lines.push(line)
    const event = parseEvent(line)
    if (event !== undefined) events.push(event)
    wake()
  })
  createInterface({ input: child.stderr! }).on("line", (line) => {
    stderr.push(line)
    wake()
  })
  const closed = new Promise<Ended>((resolve, reject) => {
    child.on("error", reject)
    child.on("close", (code, signal) => resolve({ code, signal }))
  })
  const output = () => [...lines, ...stderr].join("\n")
  const until = <A>(find: () => A | undefined): Promise<A> =>
    new Promise((resolve, reject) => {
      const waiter = {
        test: () => {
          const found = find()
          if (found === undefined) return false
          resolve(found)
          return true
        }
      }
      if (waiter.test()) return
      waiters.add(waiter)
      void closed.then(({ code, signal }) => {
        if (!waiters.delete(waiter)) return
        // The last lines came with the close: look once more.
        const found = find()
        if (found !== undefined) resolve(found)
        else reject(new Error(`the CLI ended (${code ?? signal}) first:\n${output()}`))
      })
    })
  return {
    child,
    lines,
    stderr,
    events,
    closed,
    waitFor: (predicate) => until(() => events.find(predicate)),
    waitForStderr: (line) => until(() => (stderr.includes(line) ? true : undefined)).then(() => {})
  }
}

/** A finished run: its exit code, output and events. */
export interface Result {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  readonly events: ReadonlyArray<Event>
}

/** Runs the CLI to its end (its `close`). */
export const run = async (
  args: ReadonlyArray<string>,
  options: StartOptions = {}
): Promise<Result> => {
  const running = start(args, options)
  const { code, signal } = await running.closed
  return {
    code,
    signal,
    stdout: running.lines.join("\n"),
    stderr: running.stderr.join("\n"),
    events: running.events
  }
}

/** The error event of a run (there must be exactly one). */
export const errorEvent = (events: ReadonlyArray<Event>): Event => {
  const errors = events.filter((event) => event.event === "error")
  expect(errors, JSON.stringify(events)).toHaveLength(1)
  return errors[0]!
}

/** No line of a stack trace in the output. */
export const noStackTrace = (output: string) =>
  expect(output.split("\n").filter((line) => /^\s+at /.test(line))).toEqual([])
