/**
 * Docker inside gVisor: what the host engine's `runsc` runtime must be for
 * a Docker-enabled sandbox to work, checked before the sandbox is created,
 * and the one thing Docker inside cannot do there.
 *
 * The host engine's `daemon.json` must hold (see {@link DAEMON_JSON}):
 *
 * ```json
 * { "runtimes": { "runsc": { "path": "runsc", "runtimeArgs": ["--net-raw", "--network=host", "--host-uds=create"] } } }
 * ```
 *
 * - `--network=host`: without it runsc refuses every container, even
 *   `--network none` ("cannot run with network enabled in root network
 *   namespace").
 * - `--net-raw`: without it runsc takes CAP_NET_RAW from every process, so
 *   raw sockets (ping) fail in the containers Docker inside runs.
 * - `--host-uds=create` (optional): a unix socket bound inside the sandbox
 *   in a bind-mounted directory is a socket of the host, so this machine
 *   reaches Docker inside over it (`dockerVia: "host-socket"`). Without it
 *   the sandbox is reached by exec. `create`, not `all`: the host connects
 *   to the sandbox's sockets; the sandbox needs no host socket of its own
 *   (`open`, which `all` includes, would let it connect to any socket the
 *   host puts in a directory it sees).
 * - runsc 20240729 or newer: older releases (Debian 12's 20221219) do not
 *   give the sandbox the cgroup v1 `devices` controller, and dockerd inside
 *   exits ("Devices cgroup isn't mounted").
 *
 * @since 0.2.0
 */
import { spawn } from "node:child_process"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { DockerEngineClient, EngineError } from "./DockerEngine.js"
import { resolveExecutable } from "./internal/executable.js"
import { LivenessPolicy } from "./Supervisor.js"

/**
 * The runtime name a sandbox asks the host engine for.
 *
 * @since 0.2.0
 * @category constants
 */
export const RUNTIME = "runsc"

/**
 * The oldest runsc release known to run Docker inside (a date, `YYYYMMDD`).
 *
 * @since 0.2.0
 * @category constants
 */
export const MIN_RELEASE = 20240729

/**
 * The arguments the engine must pass to runsc.
 *
 * @since 0.2.0
 * @category constants
 */
export const RUNTIME_ARGS = ["--net-raw", "--network=host", "--host-uds=create"] as const

/**
 * What the host engine's `daemon.json` must hold (then reload it: SIGHUP).
 *
 * @since 0.2.0
 * @category constants
 */
export const DAEMON_JSON = `{ "runtimes": { "runsc": { "path": "runsc", "runtimeArgs": ["--net-raw", "--network=host", "--host-uds=create"] } } }`

/**
 * Liveness of dockerd inside a gVisor sandbox reached by exec: every 2 s,
 * 10 s per check, 3 failures in a row. Each check is a `docker version`
 * exec through the engine and runsc; while dockerd inside copies vfs
 * layers (a build, a container create) on a loaded machine, such an exec
 * took over 2 s three times in a row, and the default policy stopped a
 * working daemon. Over a host socket (`--host-uds=create`) the default
 * policy is used: under the same load `/_ping` from the host answered
 * within 0.4 s.
 *
 * @since 0.2.0
 * @category constants
 */
export const liveness: LivenessPolicy = new LivenessPolicy({
  interval: Duration.seconds(2),
  timeout: Duration.seconds(10),
  failureThreshold: 3
})

/**
 * What is wrong with the host engine's runsc.
 *
 * @since 0.2.0
 * @category models
 */
export const Problem = Schema.Literal(
  "not-registered",
  "network-not-host",
  "no-net-raw",
  "too-old",
  "no-host-uds"
)

/**
 * @since 0.2.0
 * @category models
 */
export type Problem = typeof Problem.Type

const FIX: Record<Problem, string> = {
  "not-registered": `Register runsc with the host engine: put ${DAEMON_JSON} in its daemon.json and reload it (SIGHUP)`,
  "network-not-host": `Give runsc --network=host in the engine's daemon.json (${DAEMON_JSON}) and reload it (SIGHUP)`,
  "no-net-raw": `Give runsc --net-raw in the engine's daemon.json (${DAEMON_JSON}) and reload it (SIGHUP)`,
  "too-old": `Install runsc ${MIN_RELEASE} or newer (on Debian 12: apt-get install -t bookworm-backports runsc)`,
  "no-host-uds": `Give runsc --host-uds=create in the engine's daemon.json (${DAEMON_JSON}) and reload it (SIGHUP), or create the sandbox with dockerVia: "exec"`
}

/**
 * The host engine's runsc cannot run Docker inside a sandbox; `fix` says
 * what to change.
 *
 * @since 0.2.0
 * @category errors
 */
export class RunscUnsuitable extends Schema.TaggedError<RunscUnsuitable>()("RunscUnsuitable", {
  problem: Problem,
  /** What went wrong, as seen. */
  reason: Schema.String,
  /** The runtime's path as the engine has it registered. */
  path: Schema.optional(Schema.String),
  runtimeArgs: Schema.Array(Schema.String),
  /** `runsc --version`'s first line, when runsc could be run here. */
  version: Schema.optional(Schema.String),
  fix: Schema.String
}) {
  override get message(): string {
    return `the host engine's runsc cannot run Docker inside a sandbox: ${this.reason}. ${this.fix}.`
  }
}

/**
 * A container inside a gVisor sandbox asked for a network namespace of its
 * own. Under runsc with `--network=host` a network namespace made inside
 * the sandbox has no network stack: runc's init asks it for its links over
 * netlink and gets EPROTONOSUPPORT ("error during container init: protocol
 * not supported"). Inner containers use `--network host`.
 *
 * @since 0.2.0
 * @category errors
 */
export class NestedNetworkUnsupported extends Schema.TaggedError<NestedNetworkUnsupported>()(
  "NestedNetworkUnsupported",
  { network: Schema.String }
) {
  override get message(): string {
    return `a container with --network ${this.network} cannot start inside a gVisor sandbox: a network namespace made inside runsc (--network=host) has no network stack, and runc's init fails with "protocol not supported". Use network "host" (the default).`
  }
}

/**
 * The registration of a runtime in `GET /info`.
 *
 * @since 0.2.0
 * @category models
 */
export const Registration = Schema.Struct({
  path: Schema.optional(Schema.String),
  runtimeArgs: Schema.optional(Schema.NullOr(Schema.Array(Schema.String)))
})

const InfoRuntimes = Schema.Struct({
  Runtimes: Schema.optional(Schema.Record({ key: Schema.String, value: Registration }))
})

/**
 * What runsc's arguments set, read the way runsc reads its flags (`-x`,
 * `--x`, `--x=v`, `--x v`; a boolean flag without a value is true). Later
 * flags win. `hostUds` is `--host-uds`'s value (the deprecated
 * `--fsgofer-host-uds` means `all`).
 *
 * @since 0.2.0
 * @category checks
 */
export const readArgs = (
  args: ReadonlyArray<string>
): {
  readonly network: string | undefined
  readonly netRaw: boolean
  readonly hostUds: string | undefined
} => {
  let network: string | undefined
  let netRaw = false
  let hostUds: string | undefined
  const isTrue = (value: string | undefined) =>
    value === undefined || value === "true" || value === "1"
  for (let i = 0; i < args.length; i++) {
    const match = /^--?([a-z0-9-]+)(?:=(.*))?$/.exec(args[i] ?? "")
    if (match === null) continue
    const [, name, value] = match
    if (name === "network") network = value ?? args[++i]
    if (name === "net-raw") netRaw = isTrue(value)
    if (name === "host-uds") hostUds = value ?? args[++i]
    if (name === "fsgofer-host-uds") hostUds = isTrue(value) ? "all" : "none"
  }
  return { network, netRaw, hostUds }
}

/**
 * Whether a registration's runsc makes a unix socket bound inside the
 * sandbox, in a bind-mounted directory, a socket of the host
 * (`--host-uds=create` or `all`): then this machine reaches Docker inside
 * over it.
 *
 * @since 0.2.0
 * @category checks
 */
export const hostSocketAllowed = (registration: typeof Registration.Type | undefined): boolean => {
  const { hostUds } = readArgs(registration?.runtimeArgs ?? [])
  return hostUds === "create" || hostUds === "all"
}

/**
 * The release date in a `runsc --version` line (`runsc version
 * release-20240729.0`, Debian's `0.0~20240729.0`).
 *
 * @since 0.2.0
 * @category checks
 */
export const releaseOf = (version: string): number | undefined => {
  const match = /(?:^|[^0-9])(20\d{6})(?:\.\d+)?(?:[^0-9]|$)/.exec(version)
  return match?.[1] === undefined ? undefined : Number(match[1])
}

/**
 * Checks a registration (and the version, when known) against what Docker
 * inside needs; with `needs.hostSocket`, also that this machine can reach
 * Docker inside over a socket (`--host-uds=create`).
 *
 * @since 0.2.0
 * @category checks
 */
export const check = (
  registration: typeof Registration.Type | undefined,
  version?: string,
  needs: { readonly hostSocket?: boolean } = {}
): Option.Option<RunscUnsuitable> => {
  const runtimeArgs = registration?.runtimeArgs ?? []
  const fail = (problem: Problem, reason: string) =>
    Option.some(
      new RunscUnsuitable({
        problem,
        reason,
        ...(registration?.path === undefined ? {} : { path: registration.path }),
        runtimeArgs,
        ...(version === undefined ? {} : { version }),
        fix: FIX[problem]
      })
    )
  if (registration === undefined)
    return fail("not-registered", `the engine has no runtime named ${RUNTIME}`)
  const args = readArgs(runtimeArgs)
  if (args.network !== "host")
    return fail(
      "network-not-host",
      `its runtimeArgs (${runtimeArgs.join(" ") || "none"}) do not hold --network=host, so runsc refuses every container ("cannot run with network enabled in root network namespace")`
    )
  if (!args.netRaw)
    return fail(
      "no-net-raw",
      `its runtimeArgs (${runtimeArgs.join(" ")}) do not hold --net-raw, so raw sockets (ping) fail in the containers inside`
    )
  const release = version === undefined ? undefined : releaseOf(version)
  if (release !== undefined && release < MIN_RELEASE)
    return fail(
      "too-old",
      `${version} is older than ${MIN_RELEASE}: it gives no cgroup v1 devices controller and dockerd inside exits ("Devices cgroup isn't mounted")`
    )
  if (needs.hostSocket === true && !hostSocketAllowed(registration))
    return fail(
      "no-host-uds",
      `Docker inside was asked for over a host socket (dockerVia: "host-socket"), but its runtimeArgs (${runtimeArgs.join(" ")}) do not hold --host-uds=create, so a socket made inside the sandbox is not one this machine can connect to`
    )
  return Option.none()
}

/** `runsc --version`'s first line, or undefined when it cannot run here. */
const versionOf = (path: string): Effect.Effect<string | undefined> =>
  resolveExecutable(path, process.env.PATH).pipe(
    Effect.flatMap((binary) =>
      Effect.async<string | undefined>((resume) => {
        const child = spawn(binary, ["--version"], { stdio: ["ignore", "pipe", "ignore"] })
        let stdout = ""
        child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
        child.once("error", () => resume(Effect.succeed(undefined)))
        child.once("close", (code) =>
          resume(Effect.succeed(code === 0 ? stdout.split("\n")[0]?.trim() : undefined))
        )
        return Effect.sync(() => child.kill("SIGKILL"))
      })
    ),
    Effect.timeout("10 seconds"),
    Effect.orElseSucceed(() => undefined)
  )

/**
 * What the preflight found: the registration, the version (when runsc
 * could be run here), and whether Docker inside can be reached over a host
 * socket (`--host-uds=create`); otherwise only by exec.
 *
 * @since 0.2.0
 * @category models
 */
export interface Preflight {
  readonly registration: typeof Registration.Type | undefined
  readonly version: string | undefined
  readonly hostSocket: boolean
}

/**
 * Reads the host engine's runsc registration (`GET /info`, `Runtimes`) and,
 * when the registered binary is on this machine, its version; fails with
 * {@link RunscUnsuitable} naming the fix when Docker inside cannot work, or
 * (`needs.hostSocket`) cannot be reached over a host socket.
 *
 * @since 0.2.0
 * @category checks
 */
export const preflight = Effect.fn("Gvisor.preflight")(function* (
  engine: DockerEngineClient,
  needs: { readonly hostSocket?: boolean } = {}
) {
  const info = yield* engine.request("GET", "/info", { schema: InfoRuntimes })
  const registration = info.Runtimes?.[RUNTIME]
  const version = registration?.path === undefined ? undefined : yield* versionOf(registration.path)
  const problem = check(registration, version, needs)
  if (Option.isSome(problem)) return yield* problem.value
  const hostSocket = hostSocketAllowed(registration)
  yield* Effect.annotateCurrentSpan({ runscVersion: version ?? "unknown", hostSocket })
  return { registration, version, hostSocket } satisfies Preflight
}) satisfies (
  engine: DockerEngineClient,
  needs?: { readonly hostSocket?: boolean }
) => Effect.Effect<Preflight, RunscUnsuitable | EngineError>
