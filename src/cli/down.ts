/**
 * `sandbox-docker down`: stop a dockerd by its pidfile or its socket, the
 * way `up` stops its own (SIGTERM, `--stop-grace`, SIGKILL, then what it
 * left: containerd, shims, containers' processes, mounts, pidfile,
 * socket). For a daemon a killed `up` left, or one started in the
 * background. A pidfile holding any other process is refused and never
 * touched. With nothing running, what a killed run left under an
 * `--exec-root` and `--data-root` given here is removed.
 *
 * @since 0.1.0
 */
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as DockerdConfig from "../DockerdConfig.js"
import * as DockerHost from "../DockerHost.js"
import { PidfileInUse } from "../errors.js"
import * as Shared from "./options.js"
import * as Planned from "./planned.js"
import * as Reporter from "./Reporter.js"

const { text } = Shared

const options = {
  socket: text("socket", "PATH", "the daemon's unix socket: a dockerd naming it is stopped"),
  pidfile: text(
    "pidfile",
    "PATH",
    "the daemon's pidfile: its dockerd is stopped (default /var/run/docker.pid)"
  ),
  dataRoot: text("data-root", "DIR", "the daemon's --data-root (where its mounts are)"),
  execRoot: text("exec-root", "DIR", "the daemon's --exec-root (where its containerd is)"),
  arg: Options.text("arg").pipe(
    Options.withPseudoName("FLAG"),
    Options.withDescription(
      "a flag the daemon was started with that says where its things are, e.g. --arg=--config-file=PATH (repeatable)"
    ),
    Options.repeated
  ),
  stopGrace: Shared.duration("stop-grace", "time between SIGTERM and SIGKILL (default 10s)"),
  json: Shared.json
}

/**
 * The parsed options of `down`, before validation.
 *
 * @since 0.1.0
 * @category config
 */
export type DownOptions = Shared.ValuesOf<typeof options>

/**
 * What `down` will do, validated: the daemon's configuration as `up` would
 * have it, and which of its paths a dockerd is looked for by.
 *
 * @since 0.1.0
 * @category models
 */
export interface DownPlan {
  readonly _tag: "Down"
  readonly config: DockerdConfig.DockerdConfig
  readonly by: ReadonlyArray<"pidfile" | "socket" | "data-root" | "exec-root">
  /** Whether both roots were given, so a killed run's leftovers can be told. */
  readonly rootsGiven: boolean
  readonly json: boolean
}

/** The option a configuration field comes from, for messages. */
const OPTION_OF_FIELD: Readonly<Record<string, string>> = {
  socket: "socket",
  pidfile: "pidfile",
  dataRoot: "data-root",
  execRoot: "exec-root",
  extraArgs: "arg",
  stopGrace: "stop-grace"
}

/**
 * Validates the options of `down` into a plan, stopping nothing. A
 * `--socket` or a `--pidfile` is needed: with neither, the machine's own
 * daemon would be the one found.
 *
 * @since 0.1.0
 * @category config
 */
export const plan = (opts: DownOptions): Effect.Effect<DownPlan, Shared.InvalidArguments> =>
  Effect.gen(function* () {
    if (Option.isNone(opts.socket) && Option.isNone(opts.pidfile)) {
      return yield* new Shared.InvalidArguments({
        option: "socket",
        problem:
          "down needs --socket or --pidfile (the daemon to stop); it never guesses the machine's own"
      })
    }
    const stopGrace = yield* Shared.decodeDuration("stop-grace", opts.stopGrace)
    const given = <A>(key: string, value: Option.Option<A>) =>
      Option.match(value, { onNone: () => ({}), onSome: (v) => ({ [key]: v }) })
    const config = yield* DockerdConfig.decode({
      ...given("socket", opts.socket),
      ...given("pidfile", opts.pidfile),
      ...given("dataRoot", opts.dataRoot),
      ...given("execRoot", opts.execRoot),
      ...given("stopGrace", stopGrace),
      extraArgs: opts.arg
    }).pipe(
      Effect.mapError(
        (error) =>
          new Shared.InvalidArguments({
            option: OPTION_OF_FIELD[error.field.split(".")[0] ?? ""] ?? error.field,
            problem: error.problem
          })
      )
    )
    return {
      _tag: "Down",
      config,
      by: [
        ...(Option.isSome(opts.pidfile) ? (["pidfile"] as const) : []),
        ...(Option.isSome(opts.socket) ? (["socket"] as const) : []),
        ...(Option.isSome(opts.dataRoot) ? (["data-root"] as const) : []),
        ...(Option.isSome(opts.execRoot) ? (["exec-root"] as const) : [])
      ],
      rootsGiven: Option.isSome(opts.dataRoot) && Option.isSome(opts.execRoot),
      json: opts.json
    } satisfies DownPlan
  })

/**
 * Runs a plan: finds the daemon, stops it and what it left. Events:
 * `stopping` (`pid`, `foundBy`), `stopped` (`pid`, `killed`,
 * `leftoverProcesses`, `leftoverMounts`, `elapsedMs`), or `not-running`
 * (`leftoverProcesses`, `leftoverMounts`: what a killed run had left).
 *
 * @since 0.1.0
 * @category commands
 */
export const execute = (downPlan: DownPlan) =>
  Effect.gen(function* () {
    const reporter = Reporter.make({ json: downPlan.json })
    const host = yield* DockerHost.DockerHost
    const { config } = downPlan
    const settings = yield* host.settings(config)
    const running = yield* host.running(config, settings, downPlan.by)
    if (running._tag === "Other") {
      return yield* new PidfileInUse({ pidfile: settings.pidfile, pid: running.pid })
    }
    if (running._tag === "None") {
      const left = downPlan.rootsGiven ? yield* host.recover(settings) : { processes: 0, mounts: 0 }
      return yield* reporter.info(
        "not-running",
        {
          pidfile: settings.pidfile,
          socket: config.socket,
          leftoverProcesses: left.processes,
          leftoverMounts: left.mounts
        },
        `no dockerd runs for ${downPlan.by.includes("socket") ? config.socket : settings.pidfile}${
          left.processes + left.mounts > 0
            ? `; removed what a killed one left: ${left.processes} processes, ${left.mounts} mounts`
            : ""
        }`
      )
    }
    yield* reporter.info(
      "stopping",
      { pid: running.pid, foundBy: running.foundBy },
      `stopping dockerd pid ${running.pid} (found by its ${running.foundBy})`
    )
    const stopped = yield* host.stopRunning(config, settings, running.pid)
    if (stopped.survived) {
      return yield* Effect.dieMessage(
        `dockerd pid ${running.pid} is still there 10 s after SIGKILL (stuck in the kernel?)`
      )
    }
    yield* reporter.info(
      "stopped",
      { ...stopped },
      `stopped dockerd pid ${running.pid}${stopped.killed ? " with SIGKILL" : ""} in ${stopped.elapsedMs} ms (${stopped.leftoverProcesses} leftover processes, ${stopped.leftoverMounts} mounts)`
    )
  })

/**
 * The `down` command, with what to do with its validated plan.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Planned.command(
  "down",
  options,
  plan,
  "Stop the dockerd of --pidfile or --socket (one a killed `up` left, or started in the background): SIGTERM, --stop-grace, SIGKILL, then its containerd, shims, mounts, pidfile and socket; exit 0 when it is gone, or when none ran. A pidfile holding another process is refused (exit 2) and left alone."
)

/**
 * The `down` command.
 *
 * @since 0.1.0
 * @category commands
 */
export const down = command(execute)
