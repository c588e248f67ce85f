/**
 * A sandbox: a container on the host's Docker Engine, with runc or gVisor's
 * runsc, resources and environment, and optionally Docker inside.
 *
 * Creating a sandbox never waits on Docker. With Docker enabled the sandbox
 * prepares cgroups and starts dockerd inside, which is supervised in the
 * background with the same readiness runtime as a local daemon: over a
 * directory of this machine shared with the sandbox, the entrypoint does both
 * as the container starts and this machine probes dockerd's socket; by exec,
 * both go through the container's process manager and probes run `docker
 * info` inside. Docker commands wait for that lazily and fail with the typed
 * error when it cannot come.
 *
 * Removing the sandbox (or closing its scope) kills and removes the inner
 * containers, stops dockerd and containerd (TERM, then KILL), then removes
 * the sandbox container and its volume.
 *
 * @since 0.1.0
 */
import * as Os from "node:os"
import * as Path from "node:path"
import * as FileSystem from "@effect/platform/FileSystem"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as ContainerProcessManager from "./ContainerProcessManager.js"
import * as Containerd from "./Containerd.js"
import type { EventSink } from "./DaemonEvent.js"
import { describe as describeStatus } from "./ProcessStatus.js"
import type { DockerDaemon } from "./Dockerd.js"
import * as DockerHost from "./DockerHost.js"
import * as DockerdConfig from "./DockerdConfig.js"
import * as DockerEngine from "./DockerEngine.js"
import * as Gvisor from "./Gvisor.js"
import * as EntrypointProcess from "./internal/entrypointProcess.js"
import type { StartError, SupervisionError } from "./errors.js"
import { InvalidConfig } from "./errors.js"
import * as Probe from "./Probe.js"
import { type ProcessManagerShape, ProcessManager } from "./ProcessManager.js"
import { fast, type ReadinessPolicy } from "./ReadinessPolicy.js"
import * as SandboxDocker from "./SandboxDocker.js"
import * as SandboxLease from "./SandboxLease.js"
import * as SandboxSecurity from "./SandboxSecurity.js"
import * as Supervisor from "./Supervisor.js"

/**
 * A registry mirror: an `http://` or `https://` URL of a host (and port),
 * with nothing after it but `/` (what dockerd accepts).
 *
 * @since 0.1.0
 * @category models
 */
export const RegistryMirror = Schema.String.pipe(
  Schema.filter(
    (url) =>
      /^https?:\/\/(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?\/?$/.test(
        url
      ) ||
      `${JSON.stringify(url)} is not a registry mirror: give an http:// or https:// URL of a host and port, like http://10.0.0.2:5000, with no path, user or query`
  ),
  Schema.annotations({ identifier: "RegistryMirror" })
)

/**
 * A registry reached without verified TLS: `host[:port]` or a CIDR block
 * such as `10.0.0.0/8` (no scheme).
 *
 * @since 0.1.0
 * @category models
 */
export const InsecureRegistry = Schema.String.pipe(
  Schema.filter(
    (entry) =>
      /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/.test(
        entry
      ) ||
      /^\d{1,3}(?:\.\d{1,3}){3}\/\d{1,2}$/.test(entry) ||
      `${JSON.stringify(entry)} is not an insecure registry: give host[:port] (like 10.0.0.2:5000) or a CIDR block (like 10.0.0.0/8), without http://`
  ),
  Schema.annotations({ identifier: "InsecureRegistry" })
)

/**
 * What to create.
 *
 * @since 0.1.0
 * @category models
 */
export class SandboxSpec extends Schema.Class<SandboxSpec>("SandboxSpec")({
  /** The image; for Docker inside, one with docker.io installed. */
  image: Schema.NonEmptyTrimmedString,
  /** `runc`, or gVisor's `runsc` (registered with the host engine). */
  runtime: Schema.optionalWith(Schema.Literal("runc", "runsc"), { default: () => "runc" as const }),
  /** CPU cores (fractions allowed). */
  cpu: Schema.optional(Schema.Number.pipe(Schema.greaterThan(0), Schema.lessThanOrEqualTo(256))),
  /** Memory limit in MiB. */
  memoryMb: Schema.optional(Schema.Int.pipe(Schema.greaterThanOrEqualTo(16))),
  /** Environment of the sandbox's processes. */
  env: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.String }), {
    default: () => ({})
  }),
  /** Start Docker inside. */
  dockerEnabled: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  /** A container name; generated when absent. */
  name: Schema.optional(
    Schema.String.pipe(
      Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, {
        message: () =>
          "a sandbox name is 1-63 letters, digits, _ . or -, starting with a letter or digit"
      })
    )
  ),
  /**
   * The sandbox's network: `bridge` (the default: a network namespace of its
   * own on the engine's bridge), `none`, or `host` (the engine's network
   * namespace, as the seed's platform does). Inner containers share the
   * sandbox's. With Docker inside, `host` is refused on an engine that has
   * its `docker0` bridge: the inner dockerd (`--bridge=none`) would delete it.
   */
  network: Schema.optionalWith(Schema.Literal("host", "none", "bridge"), {
    default: () => "bridge" as const
  }),
  /**
   * Registry mirrors for Docker inside (dockerd's `--registry-mirror`), for
   * example a pull-through cache in front of a public registry: `http://` or
   * `https://` URLs of a host (and port), nothing after it.
   */
  registryMirrors: Schema.optionalWith(Schema.Array(RegistryMirror), { default: () => [] }),
  /**
   * Registries Docker inside may reach over plain HTTP or unverified TLS
   * (dockerd's `--insecure-registry`): `host[:port]` or a CIDR block.
   */
  insecureRegistries: Schema.optionalWith(Schema.Array(InsecureRegistry), { default: () => [] })
}) {}

/**
 * The sandbox container could not be created or started.
 *
 * @since 0.1.0
 * @category errors
 */
export class SandboxCreateFailed extends Schema.TaggedError<SandboxCreateFailed>()(
  "SandboxCreateFailed",
  { image: Schema.String, reason: Schema.String, hint: Schema.String }
) {
  override get message(): string {
    return `could not create a sandbox from ${this.image}: ${this.reason}. ${this.hint}`
  }
}

/**
 * A Docker command was used on a sandbox created without Docker.
 *
 * @since 0.1.0
 * @category errors
 */
export class DockerNotEnabled extends Schema.TaggedError<DockerNotEnabled>()("DockerNotEnabled", {
  sandbox: Schema.String
}) {
  override get message(): string {
    return `sandbox ${this.sandbox} was created without Docker: create it with dockerEnabled: true`
  }
}

/**
 * Why Docker is not available in a sandbox.
 *
 * @since 0.1.0
 * @category errors
 */
export type DockerUnavailable = DockerNotEnabled | StartError | SupervisionError

/**
 * Options of {@link create}.
 *
 * @since 0.1.0
 * @category models
 */
export interface CreateOptions {
  /** The host engine's unix socket. */
  readonly engineSocket: string
  /** How to wait for Docker inside. Default `fast`, with a 60 s deadline. */
  readonly readiness?: ReadinessPolicy | undefined
  /** Events of the daemon inside. */
  readonly onEvent?: EventSink | undefined
  /** Grace between SIGTERM and SIGKILL for dockerd inside. Default 10 s. */
  readonly stopGrace?: Duration.DurationInput | undefined
  /** How dockerd inside is checked after ready. Default: 1 s / 2 s / 3; under runsc by exec `Gvisor.liveness`. */
  readonly liveness?: Supervisor.LivenessPolicy | undefined
  /**
   * The sandbox's owner and lease (labels on its container; see
   * `SandboxLease`): by default this process, with a 60 s lease renewed
   * every 20 s while the sandbox's scope lives. `Sandbox.reap` and
   * `sandbox gc` remove the sandbox once its owner is gone or its lease ran out.
   */
  readonly lease?: SandboxLease.LeaseOptions | undefined
  /**
   * How this machine reaches Docker inside. `host-socket` (the default):
   * dockerd's socket and exec-root are in a directory of this machine
   * bind-mounted into the sandbox, so readiness, liveness and pulls go over
   * that socket and no probe starts a process inside; the preparation runs
   * as the container starts. On runsc it needs the engine's runsc
   * registered with `--host-uds=create`: without it the default is `exec`,
   * and asking for `host-socket` fails with `RunscUnsuitable` (`no-host-uds`).
   * `exec`: every probe is a `docker` command run inside through the
   * Engine's exec API. Use `exec` for an engine that does not share this
   * machine's file system.
   */
  readonly dockerVia?: "host-socket" | "exec" | undefined
}

/**
 * A running sandbox. Valid until it is removed or its scope closes.
 *
 * @since 0.1.0
 * @category models
 */
export interface Sandbox {
  readonly id: string
  readonly name: string
  readonly spec: SandboxSpec
  /**
   * What its runtime means for the host: `runsc`, a kernel of its own;
   * `runc`, the host's kernel and, with Docker inside, the routes to the
   * host that stay open (README, "Security").
   */
  readonly isolation: SandboxSecurity.Isolation
  /** The process manager inside the sandbox. */
  readonly processManager: ProcessManagerShape
  /** Starts a process inside the sandbox (`processManager.exec`). */
  readonly exec: ProcessManagerShape["exec"]
  /** Waits until Docker inside is ready (lazily), or fails with why not. */
  readonly daemon: Effect.Effect<DockerDaemon, DockerUnavailable>
  /** Docker commands inside the sandbox. */
  readonly docker: SandboxDocker.SandboxDocker
  /**
   * Where this machine reaches Docker inside's socket (`dockerVia:
   * "host-socket"`), for an Engine client of one's own once `daemon` is
   * ready; `undefined` when Docker inside is reached by exec only.
   */
  readonly dockerSocket: string | undefined
  /** Removes the sandbox and everything in it. */
  readonly remove: Effect.Effect<void>
  /** The owner label the sandbox carries. */
  readonly owner: string
  /** Renews the lease now (it is also renewed every third of its ttl). */
  readonly renew: Effect.Effect<void, SandboxLease.LeaseRenewFailed>
}

/** The state of Docker inside. */
type DockerState =
  | { readonly _tag: "Starting" }
  | { readonly _tag: "Ready"; readonly daemon: DockerDaemon }
  | { readonly _tag: "Failed"; readonly error: DockerUnavailable }

const ContainerCreated = Schema.Struct({ Id: Schema.String })
const ContainerSummary = Schema.Struct({
  Name: Schema.String,
  HostConfig: Schema.optional(SandboxSecurity.AppliedHostConfig)
})

/**
 * The configuration of dockerd inside a sandbox, by runtime.
 *
 * @since 0.1.0
 * @category config
 */
export const innerDockerd = (
  spec: SandboxSpec,
  stopGrace: Duration.Duration
): DockerdConfig.DockerdConfigInput => {
  const registries = [
    ...spec.registryMirrors.map((mirror) => `--registry-mirror=${mirror}`),
    ...spec.insecureRegistries.map((entry) => `--insecure-registry=${entry}`)
  ]
  return spec.runtime === "runsc"
    ? { profile: "gvisor", extraArgs: registries, stopGrace }
    : {
        // No bridge and no iptables: inner containers use the sandbox's
        // network; the storage driver is chosen by dockerd (overlay2 on the
        // /var/lib/docker volume).
        profile: "default",
        extraArgs: [
          "--ip6tables=false",
          "--bridge=none",
          // On the engine's network namespace, forwarding is the host's
          // setting, and /proc/sys is read-only in the sandbox.
          ...(spec.network === "host" ? ["--ip-forward=false"] : []),
          ...registries
        ],
        stopGrace
      }
}

/**
 * The label every sandbox container carries (`sandbox-docker=sandbox`).
 *
 * @since 0.1.0
 * @category constants
 */
export const SANDBOX_LABEL = SandboxLease.SANDBOX_LABEL

/**
 * Where a sandbox reached over a host directory (`dockerVia: "host-socket"`)
 * has that directory: dockerd's socket and exec-root (containerd's socket),
 * and the preparation's marker and log.
 */
const INNER_DIR = "/run/sandbox-docker-shared"

/** The inner dockerd's socket and exec-root in that directory. */
const INNER_SOCKET = "docker.sock"
const INNER_EXEC_ROOT = "exec"

/**
 * The container's create body; `hostDir` is bind-mounted at INNER_DIR, and
 * the entrypoint prepares the sandbox and starts `dockerd` (an argv) there.
 */
const createBody = (
  spec: SandboxSpec,
  labels: Readonly<Record<string, string>>,
  hostDir?: string,
  dockerd: ReadonlyArray<string> = []
) => ({
  Image: spec.image,
  Entrypoint:
    hostDir === undefined
      ? ["sleep", "infinity"]
      : EntrypointProcess.entrypoint(INNER_DIR, PREPARE_SCRIPT, dockerd),
  Cmd: [],
  Env: [
    ...Object.entries(spec.env).map(([key, value]) => `${key}=${value}`),
    // `docker` inside talks to the inner dockerd's socket where it is.
    ...(hostDir === undefined || "DOCKER_HOST" in spec.env
      ? []
      : [`DOCKER_HOST=unix://${INNER_DIR}/${INNER_SOCKET}`])
  ],
  Labels: { ...labels, [SANDBOX_LABEL]: "sandbox" },
  // Under runsc /var/lib/docker stays in the sandbox's root overlay: on a
  // volume (served by runsc's gofer) lgetxattr of a symlink fails with EBADF,
  // and dockerd's vfs driver cannot copy a layer ("bad file descriptor").
  ...(spec.dockerEnabled && spec.runtime !== "runsc" ? { Volumes: { "/var/lib/docker": {} } } : {}),
  HostConfig: {
    // docker-init as PID 1: orphans (killed shims, exec'd processes' children)
    // are reaped, and a stop's SIGTERM reaches the sandbox's process.
    Init: true,
    NetworkMode: spec.network,
    Runtime: spec.runtime,
    ...(hostDir === undefined ? {} : { Binds: [`${hostDir}:${INNER_DIR}`] }),
    ...(spec.cpu === undefined ? {} : { NanoCpus: Math.round(spec.cpu * 1e9) }),
    ...(spec.memoryMb === undefined ? {} : { Memory: spec.memoryMb * 1024 * 1024 }),
    // Isolation: cgroup namespace, capabilities, seccomp (SandboxSecurity).
    ...SandboxSecurity.hostConfig(spec)
  }
})

/**
 * The preparation, as one fixed shell script: each step that fails says so on
 * stderr and the rest still run. One exec instead of one per step (a cgroup
 * v1 host has a dozen controllers to remount): each exec through the Engine
 * costs a round of API calls, and under load they added seconds to a
 * sandbox's start. Constant text: no value of the caller's reaches it.
 *
 * Only the cgroup hierarchies are made writable (the sandbox's own, in its
 * cgroup namespace: dockerd makes its containers' cgroups there); `/sys`
 * stays read-only and IP forwarding is a sysctl of the container
 * (SandboxSecurity.hostConfig).
 */
const PREPARE_SCRIPT = `
failed() { echo "preparation step failed: $*" >&2; }
if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
  mount -o remount,rw /sys/fs/cgroup || failed "mount -o remount,rw /sys/fs/cgroup"
else
  for dir in /sys/fs/cgroup/*; do
    [ -d "$dir" ] || continue
    mount -o remount,bind,rw "$dir" || failed "mount -o remount,bind,rw $dir"
  done
  if [ ! -e /sys/fs/cgroup/devices ]; then
    mkdir -p /sys/fs/cgroup/devices || failed "mkdir -p /sys/fs/cgroup/devices"
    mount -t cgroup -o devices devices /sys/fs/cgroup/devices ||
      failed "mount -t cgroup -o devices devices /sys/fs/cgroup/devices"
  fi
fi
`

/**
 * What Docker inside needs before it starts: a writable cgroup hierarchy
 * and the `devices` controller on cgroup v1. Runs as one exec; each step's
 * failure is logged (Debug), not fatal: dockerd then says what it lacks.
 *
 * @since 0.1.0
 * @category constructors
 */
export const prepare = Effect.fn("Sandbox.prepare")(function* (
  manager: ProcessManagerShape,
  _spec: SandboxSpec
) {
  yield* Effect.scoped(
    Effect.gen(function* () {
      const handle = yield* manager.exec(["sh", "-c", PREPARE_SCRIPT], {
        killGrace: "1 second",
        tailLines: 50
      })
      const status = yield* handle.awaitExit
      const tail = yield* handle.logTail
      const failures = tail.filter((line) => line.startsWith("preparation step failed"))
      if (failures.length > 0 || status._tag !== "Exited" || status.code !== 0) {
        yield* Effect.logDebug("preparation steps failed").pipe(
          Effect.annotateLogs({ status: describeStatus(status), output: tail.join(" | ") })
        )
      }
    })
  ).pipe(Effect.timeout("20 seconds"), Effect.ignore)
})

/**
 * Decodes a sandbox specification, failing with `InvalidConfig`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const decodeSpec = (
  input: SandboxSpec | typeof SandboxSpec.Encoded
): Effect.Effect<SandboxSpec, InvalidConfig> =>
  input instanceof SandboxSpec
    ? Effect.succeed(input)
    : Schema.decodeUnknown(SandboxSpec, { errors: "first" })(input).pipe(
        Effect.mapError((error) => {
          // The first issue, at its path: a union's last line says little.
          const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
          return new InvalidConfig({
            field: "sandbox",
            problem:
              issue === undefined
                ? error.message
                : `${issue.path.length > 0 ? `${issue.path.join(".")}: ` : ""}${issue.message}`
          })
        })
      )

/**
 * A sandbox container, created and started.
 *
 * @since 0.1.0
 * @category models
 */
export interface SandboxContainer {
  readonly id: string
  readonly name: string
}

/**
 * What {@link createContainer} prepares inside.
 *
 * @since 0.2.0
 * @category models
 */
export interface ContainerInside {
  /**
   * A directory of this machine, bind-mounted at
   * `/run/sandbox-docker-shared`: the entrypoint prepares the sandbox as it
   * starts (its complaints in `prepare.log` there).
   */
  readonly hostDir?: string | undefined
  /** With `hostDir`: the dockerd argv the entrypoint then starts. */
  readonly dockerd?: ReadonlyArray<string> | undefined
  /** The runsc preflight, when the caller has already run it. */
  readonly runscChecked?: Gvisor.Preflight | undefined
}

/**
 * Creates and starts the sandbox container on the host engine. The
 * container is removed again (with its volumes) if it cannot be started.
 * `labels` are added to the container's. Without `inside.hostDir` nothing
 * inside is prepared or started.
 *
 * @since 0.1.0
 * @category constructors
 */
export const createContainer = Effect.fn("Sandbox.createContainer")(function* (
  engine: DockerEngine.DockerEngineClient,
  spec: SandboxSpec,
  labels: Readonly<Record<string, string>> = {},
  inside: ContainerInside = {}
) {
  const { dockerd, hostDir, runscChecked } = inside
  if (spec.dockerEnabled && spec.network === "host") yield* refuseHostNetworkBeside(engine, spec)
  if (spec.dockerEnabled && spec.runtime === "runsc" && runscChecked === undefined)
    yield* checkRunsc(engine, spec, { hostSocket: hostDir !== undefined })
  const query = spec.name === undefined ? "" : `?name=${encodeURIComponent(spec.name)}`
  const created = yield* engine
    .request("POST", `/containers/create${query}`, {
      body: createBody(spec, labels, hostDir, dockerd),
      schema: ContainerCreated
    })
    .pipe(
      Effect.mapError(
        (error) =>
          new SandboxCreateFailed({
            image: spec.image,
            reason: error.message,
            hint: /No such image/i.test(error.message)
              ? "Build or pull the image first (scripts/build-images.sh builds sandbox-docker/debian-docker:bookworm)."
              : /runtime/i.test(error.message)
                ? "Register the runtime with the engine (dockerd --add-runtime, or runtimes in daemon.json)."
                : "Check the engine's log."
          })
      )
    )
  const id = created.Id
  // Removed again on any failure from here on, an interruption included.
  const name = yield* Effect.gen(function* () {
    yield* engine.request("POST", `/containers/${id}/start`).pipe(
      Effect.mapError(
        (error) =>
          new SandboxCreateFailed({
            image: spec.image,
            reason: error.message,
            hint: "Check the engine's log and the runtime."
          })
      )
    )
    const summary = yield* engine
      .request("GET", `/containers/${id}/json`, { schema: ContainerSummary })
      .pipe(
        Effect.mapError(
          (error) =>
            new SandboxCreateFailed({
              image: spec.image,
              reason: `could not read the sandbox back: ${error.message}`,
              hint: "Check the engine's log."
            })
        )
      )
    const notApplied = SandboxSecurity.checkApplied(spec.image, summary.HostConfig)
    if (notApplied !== undefined) return yield* notApplied
    return summary.Name.replace(/^\//, "")
  }).pipe(Effect.onError(() => removeContainer(engine, id)))
  return { id, name } satisfies SandboxContainer
})

/**
 * Docker inside gVisor needs the engine's runsc registered with
 * `--network=host --net-raw`, and a runsc release that gives the sandbox
 * the devices cgroup; reached over a host socket, also `--host-uds=create`:
 * checked before anything is created.
 */
const checkRunsc = (
  engine: DockerEngine.DockerEngineClient,
  spec: SandboxSpec,
  needs: { readonly hostSocket?: boolean }
) =>
  Gvisor.preflight(engine, needs).pipe(
    Effect.catchTags({
      EngineUnreachable: (error) =>
        new SandboxCreateFailed({
          image: spec.image,
          reason: error.message,
          hint: "Check the engine."
        }),
      EngineBadAnswer: (error) =>
        new SandboxCreateFailed({
          image: spec.image,
          reason: error.message,
          hint: "Check the engine."
        })
    })
  )

/** What is read of the engine's `bridge` network: the interface behind it. */
const BridgeNetwork = Schema.Struct({
  Options: Schema.optional(
    Schema.Struct({ "com.docker.network.bridge.name": Schema.optional(Schema.String) })
  )
})

/** The bridge dockerd makes by default, and deletes when started with `--bridge=none`. */
const DEFAULT_BRIDGE = "docker0"

/**
 * Docker inside a sandbox on the engine's network namespace runs its dockerd
 * with `--bridge=none`, and dockerd so started deletes `docker0` in its
 * namespace: the engine's own bridge, cutting its containers off. Refused
 * when the engine has that bridge; an engine without one (`--bridge=none`
 * itself, or another bridge) loses nothing.
 */
const refuseHostNetworkBeside = (engine: DockerEngine.DockerEngineClient, spec: SandboxSpec) =>
  Effect.flatMap(
    engine.request("GET", "/networks/bridge", { schema: BridgeNetwork }).pipe(Effect.option),
    (bridge) =>
      Option.isSome(bridge) &&
      (bridge.value.Options?.["com.docker.network.bridge.name"] ?? DEFAULT_BRIDGE) ===
        DEFAULT_BRIDGE
        ? new SandboxCreateFailed({
            image: spec.image,
            reason: `Docker inside a sandbox on the engine's network (network: host) would delete the engine's ${DEFAULT_BRIDGE} bridge (the inner dockerd runs with --bridge=none, which removes it)`,
            hint: "Use network bridge (the default) or none; host is for an engine without a docker0 bridge."
          })
        : Effect.void
  )

/**
 * Removes a sandbox container, its processes and its volumes (bounded;
 * a failure is logged).
 *
 * @since 0.1.0
 * @category cleanup
 */
export const removeContainer = (
  engine: DockerEngine.DockerEngineClient,
  id: string
): Effect.Effect<void> =>
  engine.request("DELETE", `/containers/${encodeURIComponent(id)}?force=true&v=true`).pipe(
    Effect.timeout("30 seconds"),
    Effect.tapError((error) =>
      Effect.logWarning("could not remove the sandbox container").pipe(
        Effect.annotateLogs({ error: String(error) })
      )
    ),
    Effect.ignore
  )

/**
 * Creates and starts a sandbox. Returns as soon as the container runs; with
 * Docker enabled, dockerd starts in the background.
 *
 * @since 0.1.0
 * @category constructors
 */
export const create = Effect.fn("Sandbox.create")(function* (
  input: SandboxSpec | typeof SandboxSpec.Encoded,
  options: CreateOptions
) {
  const spec = yield* decodeSpec(input)
  const parent = yield* Effect.scope
  const scope = yield* Scope.fork(parent, ExecutionStrategy.sequential)
  const engine = yield* DockerEngine.make(options.engineSocket).pipe(Scope.extend(scope))
  const stopGrace = Duration.decode(options.stopGrace ?? "10 seconds")
  const emit: EventSink = options.onEvent ?? (() => Effect.void)

  // The lease file first (removed last, after the container): the labels name it.
  const lease = yield* SandboxLease.acquire(options.lease).pipe(
    Scope.extend(scope),
    Effect.provide(NodeFileSystem.layer),
    Effect.tapError(() => Scope.close(scope, Exit.void))
  )
  // Docker inside reached over a directory of this machine: on runc, and on
  // runsc registered with --host-uds=create (its sockets made inside are
  // then the host's); asked for explicitly, that registration is required.
  const runsc =
    spec.dockerEnabled && spec.runtime === "runsc"
      ? yield* checkRunsc(engine, spec, { hostSocket: options.dockerVia === "host-socket" }).pipe(
          Effect.tapError(() => Scope.close(scope, Exit.void))
        )
      : undefined
  const viaHost =
    spec.dockerEnabled &&
    options.dockerVia !== "exec" &&
    (runsc?.hostSocket ?? spec.runtime === "runc")
  const hostDir = viaHost
    ? yield* sharedDirectory(spec).pipe(
        Scope.extend(scope),
        Effect.tapError(() => Scope.close(scope, Exit.void))
      )
    : undefined
  // Docker inside's configuration; reached over the directory, its dockerd
  // is started by the container's entrypoint (no exec round trip first).
  const dockerd = spec.dockerEnabled
    ? yield* DockerdConfig.decode(
        hostDir === undefined
          ? innerDockerd(spec, stopGrace)
          : {
              ...innerDockerd(spec, stopGrace),
              socket: `${INNER_DIR}/${INNER_SOCKET}`,
              execRoot: `${INNER_DIR}/${INNER_EXEC_ROOT}`
            }
      ).pipe(Effect.tapError(() => Scope.close(scope, Exit.void)))
    : undefined
  const dockerdArgv = dockerd === undefined ? undefined : DockerdConfig.argv(dockerd)
  const { id, name } = yield* createContainer(engine, spec, lease.labels, {
    hostDir,
    dockerd: dockerdArgv,
    runscChecked: runsc
  }).pipe(
    // Registered first, so it runs last: after Docker inside has stopped.
    Effect.tap(({ id }) => Scope.addFinalizer(scope, removeContainer(engine, id))),
    // An interruption (a pool closing while it fills) waits for the engine's
    // answer, so the container it made is known and removed with the scope.
    Effect.uninterruptible,
    Effect.tapError(() => Scope.close(scope, Exit.void))
  )
  yield* SandboxLease.keepRenewed(lease).pipe(Scope.extend(scope))
  const manager = yield* ContainerProcessManager.make({
    socket: options.engineSocket,
    containerId: id
  }).pipe(Scope.extend(scope))

  // A client of Docker inside from this machine, over the shared socket.
  const innerEngine =
    hostDir === undefined
      ? undefined
      : yield* DockerEngine.make(Path.join(hostDir, INNER_SOCKET)).pipe(Scope.extend(scope))

  const state = yield* SubscriptionRef.make<DockerState>(
    spec.dockerEnabled
      ? { _tag: "Starting" }
      : { _tag: "Failed", error: new DockerNotEnabled({ sandbox: name }) }
  )

  if (dockerd !== undefined && dockerdArgv !== undefined) {
    const probes =
      innerEngine === undefined
        ? undefined
        : yield* hostProbes(hostDir ?? "", innerEngine).pipe(Scope.extend(scope))
    // The entrypoint's dockerd is adopted by the first start; restarts exec.
    const starter =
      hostDir === undefined
        ? manager
        : yield* EntrypointProcess.adoptingFirst(manager, dockerdArgv, (execOptions) =>
            EntrypointProcess.adopt(
              { dir: hostDir, argv: dockerdArgv, containerId: id, engine, manager },
              execOptions
            ).pipe(Effect.provide(NodeFileSystem.layer))
          )
    const starting = hostDir === undefined ? prepare(manager, spec) : Effect.void
    yield* starting.pipe(
      Effect.zipRight(
        Supervisor.run(dockerd, {
          readiness: options.readiness ?? fast.withDeadline("60 seconds"),
          // Patient under runsc only by exec: over the host socket /_ping stays
          // fast while dockerd inside copies vfs layers (docs/sandboxes.md).
          liveness:
            options.liveness ??
            (spec.runtime === "runsc" && hostDir === undefined ? Gvisor.liveness : undefined),
          location: "remote",
          onEvent: emit,
          onReady: (daemon) => SubscriptionRef.set(state, { _tag: "Ready", daemon }),
          probes
        })
      ),
      Effect.catchAll((error: StartError | SupervisionError) =>
        SubscriptionRef.set(state, { _tag: "Failed", error })
      ),
      Effect.provideService(ProcessManager, starter),
      // A remote start asks nothing of this machine's host.
      Effect.provide(DockerHost.layer),
      Effect.annotateLogs({ sandbox: name }),
      // Interruptible even when created inside an uninterruptible region
      // (acquireRelease's acquire): its races and timeouts interrupt losers.
      Effect.interruptible,
      Effect.forkIn(scope)
    )
    // Registered after the daemon's fiber, so it runs before dockerd stops.
    yield* Scope.addFinalizer(scope, SandboxDocker.removeInnerContainers(manager))
  }

  const daemon = awaitDocker(state)
  // DOCKER_USERNAME/DOCKER_PASSWORD in the env: logged in before the first docker command.
  const login = SandboxDocker.loginFromEnv(spec.env)
  const ready = yield* SandboxDocker.readyAfterLogin(manager, daemon, login).pipe(
    Scope.extend(scope)
  )

  const sandbox: Sandbox = {
    id,
    name,
    spec,
    isolation: SandboxSecurity.isolation(spec),
    processManager: manager,
    exec: manager.exec,
    daemon,
    docker: SandboxDocker.make(manager, ready, {
      runtime: spec.runtime,
      // Pulls over the inner API, unless the docker CLI inside holds credentials.
      engine: Option.isNone(login) ? innerEngine : undefined
    }),
    dockerSocket: hostDir === undefined ? undefined : Path.join(hostDir, INNER_SOCKET),
    remove: Scope.close(scope, Exit.void),
    owner: lease.owner,
    renew: lease.renew
  }
  return sandbox
})

/**
 * A directory of this machine for Docker inside (0700, root's), removed
 * when the scope closes: after the sandbox container, as it is made first.
 */
const sharedDirectory = (spec: SandboxSpec) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    // Short: containerd's socket under it must fit in a socket address.
    return yield* fs.makeTempDirectoryScoped({ directory: Os.tmpdir(), prefix: "sdx-" })
  }).pipe(
    Effect.provide(NodeFileSystem.layer),
    Effect.mapError(
      (error) =>
        new SandboxCreateFailed({
          image: spec.image,
          reason: `cannot make a directory for Docker's socket: ${error.message}`,
          hint: "Check that the temp directory (TMPDIR) is writable."
        })
    )
  )

/**
 * The probes of Docker inside, from this machine over the shared
 * directory: the socket appears (watched), `/_ping` answers, then
 * containerd's version service on containerd's own socket (`/info` when it
 * is not there). Liveness: `/_ping`, then containerd.
 */
const hostProbes = (hostDir: string, engine: DockerEngine.DockerEngineClient) =>
  Effect.gen(function* () {
    const socket = engine.socket
    const containerd = yield* Containerd.make(
      Path.join(hostDir, INNER_EXEC_ROOT, "containerd", "containerd.sock")
    )
    const socketFile = yield* Probe.socketFile(socket).pipe(Effect.provide(NodeFileSystem.layer))
    return {
      readiness: Probe.all([
        socketFile,
        Probe.enginePing(engine),
        Probe.containerdVersion(containerd, { fallback: engine })
      ]),
      liveness: Probe.all([
        Probe.enginePing(engine),
        Probe.containerdVersion(containerd, { fallback: engine })
      ])
    } satisfies DockerHost.DaemonProbes
  })

/** Waits until Docker inside is ready or has failed. */
const awaitDocker = (
  state: SubscriptionRef.SubscriptionRef<DockerState>
): Effect.Effect<DockerDaemon, DockerUnavailable> =>
  state.changes.pipe(
    Stream.filter((current) => current._tag !== "Starting"),
    Stream.runHead,
    Effect.flatMap((settled) => {
      const current = Option.getOrUndefined(settled)
      if (current?._tag === "Ready") return Effect.succeed(current.daemon)
      if (current?._tag === "Failed") return Effect.fail(current.error)
      return Effect.dieMessage("the sandbox's Docker state ended without settling")
    })
  )

/**
 * Removes the sandboxes on an engine whose lease ran out or whose owner is
 * gone (see `SandboxLease.reap`); `dryRun` only judges.
 *
 * @since 0.2.0
 * @category cleanup
 */
export const reap = SandboxLease.reap
