/**
 * A ProcessManager of scripted processes that live in virtual time, for tests
 * under `TestClock` (yours and ours). A script says what a process prints and
 * when, when and how it ends, how it takes signals, and how the probes aimed
 * at it answer at each moment of its life.
 *
 * ```ts
 * const layer = TestProcessManager.layer([
 *   { match: "dockerd", script: { probes: { socket: [{ from: "1 second", answer: "ok" }] } } }
 * ])
 * ```
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { BinaryNotFound, ProbeFailed, ProbeNotYet } from "./errors.js"
import { makeOutputBuffer, type OutputSource } from "./internal/outputBuffer.js"
import * as Probe from "./Probe.js"
import {
  DEFAULT_KILL_GRACE,
  DEFAULT_TAIL_LINES,
  type ExecOptions,
  type ProcessHandle,
  ProcessManager,
  type SignalName
} from "./ProcessManager.js"
import { Exited, type ExitStatus, type ProcessStatus, Running, Signaled } from "./ProcessStatus.js"

/**
 * A line (or any text) the process prints at a moment of its life.
 *
 * @since 0.1.0
 * @category models
 */
export interface ScriptedOutput {
  readonly at: Duration.DurationInput
  readonly text: string
  readonly source?: OutputSource | undefined
}

/**
 * How a probe aimed at the process answers during one phase:
 * - `absent` / `refused`: not yet (no socket, connection refused);
 * - `hang`: the connection is accepted and held; it is answered as the next
 *   phase says when that phase begins (forever, when there is none);
 * - `ok` or `{ value }`: success;
 * - `{ fail }`: an answer that is a failure.
 *
 * @since 0.1.0
 * @category models
 */
export type ProbeAnswer =
  "absent" | "refused" | "hang" | "ok" | { readonly value: unknown } | { readonly fail: string }

/**
 * From `from` after the spawn on, a probe answers `answer`.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProbePhase {
  readonly from: Duration.DurationInput
  readonly answer: ProbeAnswer
}

/**
 * The life of one scripted process.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProcessScript {
  /** What it prints, and when. */
  readonly output?: ReadonlyArray<ScriptedOutput> | undefined
  /** When it ends on its own, and how. Without it, it runs until signalled. */
  readonly exit?:
    | { readonly at: Duration.DurationInput; readonly code: number }
    | { readonly at: Duration.DurationInput; readonly signal: SignalName }
    | undefined
  /**
   * Time from SIGTERM or SIGINT to its exit, or `ignore`. Default: at once.
   * As with the kernel, a SIGTERM sent while the process is stopped (SIGSTOP)
   * waits until it is continued (SIGCONT).
   */
  readonly onTerm?: Duration.DurationInput | "ignore" | undefined
  /** How probes aimed at it answer, by probe name. Before the first phase: `absent`. */
  readonly probes?: Readonly<Record<string, ReadonlyArray<ProbePhase>>> | undefined
}

/**
 * What a script function is told when a process is started.
 *
 * @since 0.1.0
 * @category models
 */
export interface ScriptContext {
  readonly argv: ReadonlyArray<string>
  /** Virtual milliseconds since the manager was created. */
  readonly now: number
  /** How many processes this rule started before this one. */
  readonly previous: number
}

/**
 * Which argv a script applies to, and the script.
 *
 * `match` is a binary name (compared with `argv[0]` and its basename), an argv
 * prefix, or a predicate.
 *
 * @since 0.1.0
 * @category models
 */
export interface ScriptRule {
  readonly match: string | ReadonlyArray<string> | ((argv: ReadonlyArray<string>) => boolean)
  readonly script: ProcessScript | ((context: ScriptContext) => ProcessScript)
}

/**
 * What the manager knows of a process it started.
 *
 * @since 0.1.0
 * @category models
 */
export interface ScriptedProcessInfo {
  readonly pid: number
  readonly argv: ReadonlyArray<string>
  readonly startedAt: number
  readonly status: ProcessStatus
  readonly stopped: boolean
  readonly signals: ReadonlyArray<SignalName>
}

/**
 * The test manager's own face: inspect processes, aim probes at them.
 *
 * @since 0.1.0
 * @category models
 */
export interface TestProcessManagerShape {
  /** Every process started so far, in order. */
  readonly processes: Effect.Effect<ReadonlyArray<ScriptedProcessInfo>>
  /** The processes still running. */
  readonly running: Effect.Effect<ReadonlyArray<ScriptedProcessInfo>>
  /**
   * A probe called `name` aimed at process `pid`, answering as its script's
   * `probes[name]` says.
   */
  readonly probe: (pid: number, name: string, options?: Probe.ProbeOptions) => Probe.Check
}

/**
 * The `TestProcessManager` service tag.
 *
 * @since 0.1.0
 * @category tags
 */
export class TestProcessManager extends Context.Tag("sandbox-docker/TestProcessManager")<
  TestProcessManager,
  TestProcessManagerShape
>() {}

interface ScriptedProcess {
  readonly pid: number
  readonly argv: ReadonlyArray<string>
  readonly startedAt: number
  readonly script: ProcessScript
  readonly exited: Deferred.Deferred<ExitStatus>
  /** `true` while SIGSTOPped. */
  stopped: boolean
  /** A SIGTERM or SIGINT received while stopped, delivered on SIGCONT. */
  pendingTerm: SignalName | undefined
  status: ProcessStatus
  signals: Array<SignalName>
}

const matches = (rule: ScriptRule, argv: ReadonlyArray<string>): boolean => {
  const { match } = rule
  if (typeof match === "function") return match(argv)
  if (typeof match === "string") return argv[0] === match || argv[0]?.split("/").pop() === match
  return match.every((part, i) => argv[i] === part)
}

const answerOf = (
  script: ProcessScript,
  name: string,
  elapsed: number
): { readonly answer: ProbeAnswer; readonly nextAt: Option.Option<number> } => {
  const phases = (script.probes?.[name] ?? []).map((phase) => ({
    from: Duration.toMillis(phase.from),
    answer: phase.answer
  }))
  let answer: ProbeAnswer = "absent"
  let nextAt = Option.none<number>()
  for (const phase of phases) {
    if (phase.from <= elapsed) answer = phase.answer
    else {
      nextAt = Option.some(phase.from)
      break
    }
  }
  return { answer, nextAt }
}

/**
 * Builds a test manager from its rules. Unmatched argv fail as a missing
 * binary.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  rules: ReadonlyArray<ScriptRule>
): Effect.Effect<readonly [typeof ProcessManager.Service, TestProcessManagerShape]> =>
  Effect.gen(function* () {
    const createdAt = yield* Clock.currentTimeMillis
    const all: Array<ScriptedProcess> = []
    const uses = new Map<ScriptRule, number>()
    let nextPid = 1000

    const finish = (proc: ScriptedProcess, status: ExitStatus) =>
      Effect.suspend(() => {
        if (proc.status._tag !== "Running") return Effect.void
        proc.status = status
        return Deferred.succeed(proc.exited, status)
      })

    /**
     * The process ends from `signal` after its reaction time. The delay ends
     * with the process however it ends, so nothing of it outlives it (the
     * fiber may be forked from a finalizer, hence `interruptible`).
     */
    const terminate = (proc: ScriptedProcess, signal: SignalName, onTerm: Duration.DurationInput) =>
      finish(proc, new Signaled({ signal })).pipe(
        Effect.delay(onTerm),
        Effect.raceFirst(Deferred.await(proc.exited)),
        Effect.interruptible,
        Effect.forkDaemon
      )

    const deliver = (proc: ScriptedProcess, signal: SignalName): Effect.Effect<boolean> =>
      Effect.gen(function* () {
        if (proc.status._tag !== "Running") return false
        proc.signals.push(signal)
        const onTerm = proc.script.onTerm ?? Duration.zero
        switch (signal) {
          case "SIGKILL":
            yield* finish(proc, new Signaled({ signal }))
            break
          case "SIGSTOP":
            proc.stopped = true
            break
          case "SIGCONT": {
            proc.stopped = false
            // A SIGTERM sent while stopped was held by the kernel until now.
            const pending = proc.pendingTerm
            proc.pendingTerm = undefined
            if (pending !== undefined && onTerm !== "ignore")
              yield* terminate(proc, pending, onTerm)
            break
          }
          case "SIGTERM":
          case "SIGINT": {
            if (onTerm === "ignore") break
            if (proc.stopped) proc.pendingTerm ??= signal
            else yield* terminate(proc, signal, onTerm)
            break
          }
          case "SIGQUIT":
          case "SIGHUP":
          case "SIGABRT":
            yield* finish(proc, new Signaled({ signal }))
            break
          default:
            break
        }
        return true
      })

    const exec = (
      argv: readonly [string, ...Array<string>],
      options: ExecOptions = {}
    ): Effect.Effect<ProcessHandle, BinaryNotFound, Scope.Scope> =>
      Effect.gen(function* () {
        const rule = rules.find((candidate) => matches(candidate, argv))
        if (rule === undefined) {
          return yield* new BinaryNotFound({ binary: argv[0], searched: ["<test scripts>"] })
        }
        const now = yield* Clock.currentTimeMillis
        const previous = uses.get(rule) ?? 0
        uses.set(rule, previous + 1)
        const script =
          typeof rule.script === "function"
            ? rule.script({ argv, now: now - createdAt, previous })
            : rule.script
        const proc: ScriptedProcess = {
          pid: nextPid++,
          argv,
          startedAt: now,
          script,
          exited: yield* Deferred.make<ExitStatus>(),
          stopped: false,
          pendingTerm: undefined,
          status: new Running(),
          signals: []
        }
        all.push(proc)
        const output = yield* makeOutputBuffer(
          options.tailLines ?? DEFAULT_TAIL_LINES,
          options.keepOutput ?? 0
        )

        const printing = [...(script.output ?? [])]
          .map((line) => ({ ...line, at: Duration.toMillis(line.at) }))
          .sort((a, b) => a.at - b.at)
        yield* Effect.forEach(
          printing,
          (line) =>
            Effect.flatMap(Clock.currentTimeMillis, (t) =>
              Effect.sleep(Math.max(0, proc.startedAt + line.at - t))
            ).pipe(
              Effect.zipRight(output.publish({ source: line.source ?? "stderr", text: line.text }))
            ),
          { discard: true }
        ).pipe(
          Effect.zipRight(Deferred.await(proc.exited)),
          Effect.raceFirst(Deferred.await(proc.exited)),
          Effect.zipRight(output.end),
          Effect.forkScoped
        )

        const ending = script.exit
        if (ending !== undefined) {
          const status: ExitStatus =
            "code" in ending
              ? new Exited({ code: ending.code })
              : new Signaled({ signal: ending.signal })
          yield* finish(proc, status).pipe(Effect.delay(ending.at), Effect.forkScoped)
        }

        const grace = Duration.decode(options.killGrace ?? DEFAULT_KILL_GRACE)
        const awaitWithin = (limit: Duration.Duration) =>
          Deferred.await(proc.exited).pipe(
            Effect.interruptible,
            Effect.timeout(limit),
            Effect.option
          )
        yield* Effect.addFinalizer(() =>
          Effect.gen(function* () {
            if (proc.status._tag !== "Running") return
            yield* deliver(proc, "SIGTERM")
            if (Option.isNone(yield* awaitWithin(grace))) yield* deliver(proc, "SIGKILL")
          })
        )

        const handle: ProcessHandle = {
          pid: proc.pid,
          argv,
          status: Effect.sync(() => proc.status),
          awaitExit: Deferred.await(proc.exited),
          output: output.stream,
          logTail: output.tail,
          signal: (signal) => deliver(proc, signal)
        }
        return handle
      })

    const info = (proc: ScriptedProcess): ScriptedProcessInfo => ({
      pid: proc.pid,
      argv: proc.argv,
      startedAt: proc.startedAt,
      status: proc.status,
      stopped: proc.stopped,
      signals: [...proc.signals]
    })

    const probe = (pid: number, name: string, options: Probe.ProbeOptions = {}): Probe.Check => {
      const probeName = options.name ?? name
      const notYet = (reason: string) => new ProbeNotYet({ probe: probeName, reason })
      const ask = (proc: ScriptedProcess): Effect.Effect<unknown, ProbeNotYet | ProbeFailed> =>
        Effect.gen(function* () {
          if (proc.status._tag !== "Running")
            return yield* Effect.fail(notYet("connection refused"))
          if (proc.stopped) {
            // A stopped process accepts nothing new and answers nothing.
            return yield* Effect.never
          }
          const elapsed = (yield* Clock.currentTimeMillis) - proc.startedAt
          const { answer, nextAt } = answerOf(proc.script, name, elapsed)
          if (answer === "absent") return yield* Effect.fail(notYet("no socket"))
          if (answer === "refused") return yield* Effect.fail(notYet("connection refused"))
          if (answer === "ok") return undefined
          if (answer === "hang") {
            if (Option.isNone(nextAt)) return yield* Effect.never
            yield* Effect.sleep(nextAt.value - elapsed)
            return yield* ask(proc)
          }
          if ("fail" in answer)
            return yield* Effect.fail(new ProbeFailed({ probe: probeName, reason: answer.fail }))
          return answer.value
        }).pipe(
          Effect.raceFirst(
            Effect.flatMap(Deferred.await(proc.exited), () =>
              Effect.fail(notYet("connection reset"))
            )
          )
        )
      return Probe.make(
        probeName,
        Effect.suspend(() => {
          const proc = all.find((candidate) => candidate.pid === pid)
          return proc === undefined ? Effect.fail(notYet(`no process ${pid}`)) : ask(proc)
        }),
        options
      )
    }

    const manager: TestProcessManagerShape = {
      processes: Effect.sync(() => all.map(info)),
      running: Effect.sync(() => all.filter((proc) => proc.status._tag === "Running").map(info)),
      probe
    }
    return [{ exec }, manager] as const
  })

/**
 * A layer with the scripted `ProcessManager` and its `TestProcessManager`
 * face. Use it with `TestClock`; the scripts' times are virtual.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  rules: ReadonlyArray<ScriptRule>
): Layer.Layer<ProcessManager | TestProcessManager> =>
  Layer.effectContext(
    Effect.map(make(rules), ([processManager, testManager]) =>
      Context.make(ProcessManager, processManager).pipe(
        Context.add(TestProcessManager, testManager)
      )
    )
  )
