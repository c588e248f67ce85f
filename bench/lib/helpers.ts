/**
 * What the bench's sections share: isolated directories for real daemons
 * (made exactly as the tests make them), the oracle process, helper
 * processes that are always reaped, and the run's Effect plumbing.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { accessSync, constants, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import type * as Scope from "effect/Scope"
import * as Dockerd from "../../src/Dockerd.js"
import { leftovers, removeDir, tempDir } from "../../test/support/isolated.js"

/**
 * Where the bench puts the directories of its stand-in daemons: a tmpfs
 * when there is one (`/dev/shm`), as `/run`, where dockerd's socket usually
 * lives, is on most systems. On these machines a disk directory that has
 * seen many files come and go (`/tmp`) takes ~0.8 ms of CPU per `mkdir` or
 * socket `bind`: a cost of the machine that the measurement would carry.
 */
export const scratchRoot = (): string => {
  try {
    accessSync("/dev/shm", constants.W_OK)
    return "/dev/shm"
  } catch {
    return tmpdir()
  }
}

/** A file under bench/fixtures. */
export const fixture = (name: string): string =>
  fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url))

/** Directories whose processes outlived their section (should stay empty). */
export const leaks: Array<{ readonly dir: string; readonly pids: ReadonlyArray<number> }> = []

/**
 * Runs `body` with a fresh isolated temp directory (socket, data-root,
 * exec-root, pidfile all inside it; see test/support/isolated.ts), then
 * checks that no process mentions the directory any more and removes it.
 */
export const withIsolatedDir = async <A>(body: (dir: string) => Promise<A>): Promise<A> => {
  const dir = tempDir("sdb-")
  try {
    return await body(dir)
  } finally {
    const left = await leftovers(dir)
    if (left.length > 0) {
      leaks.push({ dir, pids: left })
      console.error(`bench: processes left behind in ${dir}: ${left.join(" ")}`)
    } else removeDir(dir)
  }
}

/** Every helper process the bench started, so none can outlive it. */
const helpers = new Set<ChildProcess>()

/** Kills every helper still running (on exit, and on Ctrl-C). */
export const killHelpers = (): void => {
  for (const child of helpers) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
  }
}

/** Starts a helper process; it is killed at the latest when the bench exits. */
export const startHelper = (
  argv: readonly [string, ...Array<string>],
  options: { readonly stdin?: "pipe" | "ignore" } = {}
): ChildProcess => {
  const child = spawn(argv[0], argv.slice(1), {
    stdio: [options.stdin ?? "ignore", "pipe", "inherit"]
  })
  helpers.add(child)
  child.on("exit", () => helpers.delete(child))
  return child
}

/** Resolves with each stdout line of `child` as it comes. */
export const onLines = (child: ChildProcess, handle: (line: string) => void): void => {
  if (child.stdout === null) throw new Error("helper has no stdout")
  createInterface({ input: child.stdout }).on("line", handle)
}

/**
 * Runs a worker (a helper process, `argv` as for {@link startHelper}) to its
 * end and resolves with what it printed as its result: the last stdout line
 * that is a JSON object. Rejects, naming `what`, if it printed none.
 */
export const workerResult = <A>(argv: readonly [string, ...Array<string>], what: string) =>
  new Promise<A>((resolve, reject) => {
    const child = startHelper(argv)
    let result: A | undefined
    onLines(child, (line) => {
      if (line.startsWith("{")) result = JSON.parse(line) as A
    })
    child.on("error", reject)
    child.on("exit", (code) =>
      result === undefined ? reject(new Error(`${what} exited ${code}`)) : resolve(result)
    )
  })

/** What the oracle saw, in epoch milliseconds (null: never). */
export interface OracleResult {
  readonly okAt: number | null
  readonly infoAt: number | null
  readonly attempts: number
  readonly connectedAt: number | null
}

/**
 * Starts the oracle on `socket` and resolves once it is polling; `result`
 * resolves with what it saw. The oracle is a separate process with its own
 * event loop (bench/fixtures/oracle.mjs).
 */
export const startOracle = (
  socket: string,
  giveUpMs: number
): Promise<{ readonly result: Promise<OracleResult>; readonly stop: () => void }> =>
  new Promise((resolve, reject) => {
    const child = startHelper([
      process.execPath,
      fixture("oracle.mjs"),
      socket,
      "2",
      String(giveUpMs)
    ])
    let settle: (result: OracleResult) => void = () => {}
    const result = new Promise<OracleResult>((done) => (settle = done))
    child.on("error", reject)
    child.on("exit", () => settle({ okAt: null, infoAt: null, attempts: 0, connectedAt: null }))
    onLines(child, (line) => {
      if (line === "polling") resolve({ result, stop: () => child.kill("SIGKILL") })
      else settle(JSON.parse(line) as OracleResult)
    })
  })

/**
 * Runs an Effect of the library on this machine (`Dockerd.layerNode`: the
 * local ProcessManager and DockerHost), with no library logs (they would
 * interleave with the bench's output).
 */
export const runLocal = <A, E>(
  effect: Effect.Effect<A, E, Layer.Layer.Success<typeof Dockerd.layerNode> | Scope.Scope>
): Promise<A> =>
  Effect.runPromise(
    effect.pipe(
      Effect.scoped,
      Effect.provide(Dockerd.layerNode),
      Logger.withMinimumLogLevel(LogLevel.None)
    )
  )

/** The CPU time (user + system, ms) of the waited-for children of this process. */
export const childrenCpuMs = (): number => {
  const fields = readFileSync("/proc/self/stat", "utf8").split(") ")[1]?.split(" ") ?? []
  // After the command name: state is field 3, so cutime (16) and cstime (17)
  // are at 13 and 14 here. Clock ticks: 100 a second on Linux.
  return (Number(fields[13]) + Number(fields[14])) * 10
}

/** This process's own CPU time (user + system), in ms. */
export const selfCpuMs = (): number => {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1000
}

/** The 1-minute load average and the number of CPUs, for the record. */
export const machineLoad = (): { readonly load1: number; readonly cpus: number } => {
  const load1 = Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0])
  return {
    load1,
    cpus: Number(readFileSync("/proc/cpuinfo", "utf8").match(/^processor/gm)?.length ?? 0)
  }
}

/** A uniformly random number in [low, high). */
export const uniform = (low: number, high: number): number => low + Math.random() * (high - low)

/** `items` in a random order. */
export const shuffled = <A>(items: ReadonlyArray<A>): Array<A> => {
  const copy = [...items]
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[copy[i], copy[j]] = [copy[j] as A, copy[i] as A]
  }
  return copy
}

/**
 * Starts the exit oracle (bench/fixtures/exit-oracle.mjs) and resolves once
 * it runs; `watch(pid)` starts its 1 ms watch, `result` resolves with the
 * moment it saw the process dead (null if stopped first).
 */
export const startExitOracle = (): Promise<{
  readonly watch: (pid: number) => void
  readonly result: Promise<number | null>
  readonly stop: () => void
}> =>
  new Promise((resolve, reject) => {
    const child = startHelper([process.execPath, fixture("exit-oracle.mjs")], { stdin: "pipe" })
    let settle: (goneAt: number | null) => void = () => {}
    const result = new Promise<number | null>((done) => (settle = done))
    child.on("error", reject)
    child.on("exit", () => settle(null))
    onLines(child, (line) => {
      if (line === "ready") {
        resolve({
          watch: (pid) => child.stdin?.write(`${pid}\n`),
          result,
          stop: () => child.kill("SIGKILL")
        })
      } else settle((JSON.parse(line) as { goneAt: number }).goneAt)
    })
  })
