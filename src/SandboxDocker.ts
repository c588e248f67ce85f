/**
 * `sandbox.docker`: Docker commands run inside a sandbox through its process
 * manager. Each validates its arguments before anything runs (image
 * references by Schema; any value that would reach docker as an option is
 * refused), waits for Docker inside lazily, and returns a handle: the exit
 * code, a live Stream of log lines, the collected output.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Deferred from "effect/Deferred"
import * as Fiber from "effect/Fiber"
import * as PubSub from "effect/PubSub"
import * as Stream from "effect/Stream"
import type { DockerDaemon } from "./Dockerd.js"
import { type DockerEngineClient, EngineBadAnswer } from "./DockerEngine.js"
import {
  commandOf,
  type DockerCommand,
  DockerCommandFailed,
  flag,
  InvalidDockerArgument,
  KEY,
  plain,
  runDocker
} from "./internal/dockerCommand.js"
import { runOverApi } from "./internal/containerRun.js"
import * as Handle from "./internal/handle.js"
import { makeOutputBuffer } from "./internal/outputBuffer.js"
import type { ProcessManagerShape } from "./ProcessManager.js"
import { Exited, type ExitStatus, Signaled } from "./ProcessStatus.js"
import { redactText } from "./Redaction.js"
import { NestedNetworkUnsupported } from "./Gvisor.js"
import type { DockerUnavailable } from "./Sandbox.js"
import * as SandboxCompose from "./SandboxCompose.js"
import * as SandboxVolume from "./SandboxVolume.js"

export {
  /**
   * @since 0.1.0
   * @category models
   */
  type CommandOutput,
  /**
   * @since 0.1.0
   * @category models
   */
  type DockerCommand,
  /**
   * @since 0.1.0
   * @category errors
   */
  DockerCommandFailed,
  /**
   * @since 0.1.0
   * @category errors
   */
  DockerOutputInvalid,
  /**
   * @since 0.1.0
   * @category errors
   */
  InvalidDockerArgument,
  /**
   * @since 0.1.0
   * @category models
   */
  type OutputLine,
  /**
   * @since 0.1.0
   * @category running
   */
  runDocker
} from "./internal/dockerCommand.js"

/**
 * An image reference: `[registry[:port]/]name[/name…][:tag][@sha256:digest]`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ImageReference = Schema.String.pipe(
  Schema.maxLength(255),
  Schema.filter((reference) => isImageReference(reference) || "is not an image reference"),
  Schema.annotations({ identifier: "ImageReference" })
)

const DOMAIN =
  /^(?:localhost|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?$/
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/
const DIGEST = /^sha256:[a-f0-9]{64}$/

/**
 * Docker's reference grammar: the first component is a registry only when it
 * holds a `.` or a `:` or is `localhost`; path components are lowercase.
 */
const isImageReference = (reference: string): boolean => {
  const [nameAndTag = "", digest, ...more] = reference.split("@")
  if (more.length > 0 || (digest !== undefined && !DIGEST.test(digest))) return false
  const slash = nameAndTag.lastIndexOf("/")
  const colon = nameAndTag.lastIndexOf(":")
  const [name, tag] =
    colon > slash
      ? [nameAndTag.slice(0, colon), nameAndTag.slice(colon + 1)]
      : [nameAndTag, undefined]
  if (tag !== undefined && !TAG.test(tag)) return false
  const components = name.split("/")
  const first = components[0] ?? ""
  const hasDomain =
    components.length > 1 && (first.includes(".") || first.includes(":") || first === "localhost")
  if (hasDomain && !DOMAIN.test(first)) return false
  const path = hasDomain ? components.slice(1) : components
  return path.length > 0 && path.every((component) => PATH_COMPONENT.test(component))
}

/**
 * Every way a Docker command fails.
 *
 * @since 0.1.0
 * @category errors
 */
export type DockerError =
  | DockerUnavailable
  | DockerLoginFailed
  | InvalidDockerArgument
  | DockerCommandFailed
  | NestedNetworkUnsupported

const image = (argument: string, value: string) =>
  Effect.zipRight(
    plain(argument, value),
    Schema.decodeUnknown(ImageReference)(value).pipe(
      Effect.mapError(
        () =>
          new InvalidDockerArgument({
            argument,
            value,
            problem: "is not an image reference like registry:5000/name:tag"
          })
      )
    )
  )

/**
 * One progress message of a pull, as the Engine sends it
 * (`POST /images/create`): a layer's `id` and its `status` ("Pulling fs
 * layer", "Downloading", "Pull complete", …), with `progressDetail` while
 * bytes move; messages without an `id` are about the image ("Digest: …",
 * "Status: …").
 *
 * @since 0.1.0
 * @category models
 */
export class PullProgress extends Schema.Class<PullProgress>("PullProgress")({
  status: Schema.String,
  id: Schema.optional(Schema.String),
  progress: Schema.optional(Schema.String),
  progressDetail: Schema.optional(
    Schema.Struct({
      current: Schema.optional(Schema.Number),
      total: Schema.optional(Schema.Number)
    })
  )
}) {}

/** An error message in the pull's stream (sent with status 200). */
const PullErrorMessage = Schema.Struct({
  error: Schema.String,
  errorDetail: Schema.optional(Schema.Struct({ message: Schema.optional(Schema.String) }))
})

const PullMessage = Schema.parseJson(Schema.Union(PullErrorMessage, PullProgress))

/**
 * A running pull: a {@link DockerCommand} (its output as the docker CLI
 * prints it, without progress bars) and its progress as a Stream of
 * per-layer events, from the beginning, ending with the pull. When it ran
 * over the Engine API, `argv` is the equivalent command and `process.pid` is
 * 0: no process runs for it inside the sandbox.
 *
 * @since 0.1.0
 * @category models
 */
export interface PullCommand extends DockerCommand {
  readonly progress: Stream.Stream<PullProgress>
}

/** At most this much of a pull's output is kept for late readers (as for commands). */
const KEEP_OUTPUT = 8 * 1024 * 1024

/** At most this many progress messages are replayed to a late reader. */
const MAX_PROGRESS_KEPT = 4096

/** `fromImage` and `tag` of `POST /images/create` for a valid reference. */
const pullQuery = (reference: string): string => {
  const at = reference.indexOf("@")
  const slash = reference.lastIndexOf("/")
  const colon = reference.lastIndexOf(":")
  const [name, tag] =
    at >= 0
      ? [reference.slice(0, at), reference.slice(at + 1)]
      : colon > slash
        ? [reference.slice(0, colon), reference.slice(colon + 1)]
        : [reference, "latest"]
  return `fromImage=${encodeURIComponent(name)}&tag=${encodeURIComponent(tag)}`
}

/** A progress message as the docker CLI prints it off a terminal (none while bytes move). */
const cliLine = (event: PullProgress): string | undefined =>
  event.progressDetail?.current !== undefined
    ? undefined
    : `${event.id === undefined ? "" : `${event.id}: `}${event.status}\n`

/**
 * Pulls over the inner Engine API (`POST /images/create`), as a
 * {@link PullCommand}: the progress decoded with Schema, an error message in
 * the stream or an error status as exit code 1 with the Engine's words on
 * stderr (`DockerCommandFailed` from `wait` and `output`).
 */
const pullOverApi = <E>(
  engine: DockerEngineClient,
  ready: Effect.Effect<unknown, E>,
  reference: string,
  quiet: boolean
): Effect.Effect<PullCommand, E, Scope.Scope> =>
  Effect.gen(function* () {
    yield* ready
    const argv = ["docker", "pull", ...flag(quiet, "--quiet"), reference] as const
    const events = yield* PubSub.unbounded<PullProgress | null>({ replay: MAX_PROGRESS_KEPT })
    const output = yield* makeOutputBuffer(50, KEEP_OUTPUT)
    const exited = yield* Deferred.make<ExitStatus>()
    const print = (source: "stdout" | "stderr", text: string) => output.publish({ source, text })
    const failed = (message: string) =>
      Effect.zipRight(
        print("stderr", `Error response from daemon: ${message}\n`),
        Deferred.succeed(exited, new Exited({ code: 1 }))
      )
    const pulling = engine.lines("POST", `/images/create?${pullQuery(reference)}`).pipe(
      Stream.mapEffect((line) =>
        Schema.decodeUnknown(PullMessage)(line).pipe(
          Effect.mapError(
            (error) =>
              new EngineBadAnswer({
                socket: engine.socket,
                path: "/images/create",
                reason: `a progress message that does not decode: ${error.message}`
              })
          )
        )
      ),
      Stream.runForEach((message) =>
        "error" in message
          ? Effect.fail(message.errorDetail?.message ?? message.error)
          : Effect.zipRight(
              PubSub.publish(events, message),
              quiet
                ? Effect.void
                : Effect.suspend(() => {
                    const line = cliLine(message)
                    return line === undefined ? Effect.void : print("stdout", line)
                  })
            )
      ),
      Effect.matchEffect({
        onFailure: (error) => failed(typeof error === "string" ? error : error.reason),
        onSuccess: () =>
          Effect.zipRight(
            print("stdout", `${reference}\n`),
            Deferred.succeed(exited, new Exited({ code: 0 }))
          )
      }),
      Effect.onInterrupt(() => Deferred.succeed(exited, new Signaled({ signal: "SIGKILL" }))),
      Effect.ensuring(Effect.zipRight(PubSub.publish(events, null), output.end)),
      Effect.withSpan("SandboxDocker.pull", { attributes: { image: reference } })
    )
    const fiber = yield* Effect.forkScoped(pulling)
    const handle = Handle.make({
      pid: 0,
      argv,
      exited,
      output,
      // No process to signal: any signal ends the pull (the connection is closed).
      deliver: (signal) =>
        Deferred.succeed(exited, new Signaled({ signal })).pipe(
          Effect.zipRight(Fiber.interrupt(fiber)),
          Effect.as(true)
        )
    })
    const command = commandOf(argv, handle)
    return {
      ...command,
      progress: Stream.fromPubSub(events).pipe(
        Stream.takeWhile((event): event is PullProgress => event !== null)
      )
    } satisfies PullCommand
  })

/**
 * The Docker commands of one sandbox.
 *
 * @since 0.1.0
 * @category models
 */
export interface SandboxDocker {
  /**
   * Pulls an image: over the inner Engine API when this machine reaches
   * Docker inside (with its progress as a Stream), else `docker pull`
   * inside. After a `login` it is always `docker pull` inside, which has the
   * credentials.
   */
  readonly pull: (
    image: string,
    options?: { readonly quiet?: boolean }
  ) => Effect.Effect<PullCommand, DockerError, Scope.Scope>
  /**
   * Runs a container: over the inner Engine API when this machine reaches
   * Docker inside (create, pulling a missing image first, attach, start,
   * wait, remove; `process.pid` is 0), else `docker run` inside. Exit codes
   * and error words are the docker CLI's either way. Closing the scope of
   * a run still attached stops its container.
   */
  readonly run: (
    image: string,
    command?: ReadonlyArray<string>,
    options?: {
      readonly name?: string
      readonly detach?: boolean
      readonly remove?: boolean
      readonly volumes?: ReadonlyArray<string>
      readonly env?: Readonly<Record<string, string>>
      /** Default `host`, as the seed's platform: the sandbox has no bridge. */
      readonly network?: string
      /** Default `host`. */
      readonly pid?: string
    }
  ) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
  readonly build: (options: {
    readonly tag: string
    readonly context: string
    readonly dockerfile?: string
    readonly buildArgs?: Readonly<Record<string, string>>
    readonly noCache?: boolean
    readonly quiet?: boolean
    /**
     * The network of the `RUN` steps. Default `host`, as `run`'s: Docker
     * inside has no bridge, so a step on any other network has none.
     */
    readonly network?: string
  }) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
  readonly ps: (options?: {
    readonly all?: boolean
    readonly quiet?: boolean
  }) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
  readonly images: (options?: {
    readonly all?: boolean
    readonly quiet?: boolean
  }) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
  readonly logs: (
    container: string,
    options?: { readonly follow?: boolean; readonly tail?: number }
  ) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
  readonly stop: (container: string) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
  readonly rm: (
    container: string,
    options?: { readonly force?: boolean }
  ) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
  readonly rmi: (
    image: string,
    options?: { readonly force?: boolean }
  ) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
  readonly tag: (
    source: string,
    target: string
  ) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
  readonly push: (image: string) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
  /** The password goes through stdin (`--password-stdin`), never argv, logs or events. */
  readonly login: (options: {
    readonly username: string
    readonly password: Redacted.Redacted<string>
    readonly registry?: string
  }) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
  readonly exec: (
    container: string,
    command: ReadonlyArray<string>
  ) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
  /** Compose projects (`docker-compose`, in the sandbox image). */
  readonly compose: SandboxCompose.SandboxCompose
  /** Named volumes. */
  readonly volume: SandboxVolume.SandboxVolume
  /** The sandbox's runtime: under `runsc`, inner containers share the sandbox's network. */
  readonly runtime: Runtime
}

/**
 * A sandbox's runtime, as {@link make} is told it.
 *
 * @since 0.1.0
 * @category models
 */
export type Runtime = "runc" | "runsc"

/**
 * Options of {@link make}.
 *
 * @since 0.1.0
 * @category models
 */
export interface MakeOptions {
  /** The sandbox's runtime. Default `runc`. */
  readonly runtime?: Runtime | undefined
  /**
   * A client of Docker inside from this machine: pulls then go over its
   * API. Leave it out when the docker CLI inside holds credentials (a login
   * from the sandbox's environment).
   */
  readonly engine?: DockerEngineClient | undefined
}

/**
 * The Docker commands for a sandbox's process manager.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  manager: ProcessManagerShape,
  ready: Effect.Effect<DockerDaemon, DockerUnavailable | DockerLoginFailed>,
  makeOptions: MakeOptions = {}
): SandboxDocker => {
  // Credentials a `login` stored are the docker CLI's, inside: pulls after
  // one go through the CLI.
  let loggedIn = false
  const docker = (args: ReadonlyArray<string>, stdin?: Redacted.Redacted<string>) => {
    if (args[0] === "login") loggedIn = true
    return runDocker(manager, ready, args, { stdin })
  }
  const runtime = makeOptions.runtime ?? "runc"
  const engine = makeOptions.engine
  return {
    runtime,
    compose: SandboxCompose.make(manager, ready, runtime),
    volume: SandboxVolume.make(manager, ready),
    pull: (ref, options = {}) =>
      Effect.flatMap(image("image", ref), (valid) =>
        engine === undefined || loggedIn
          ? Effect.map(docker(["pull", ...flag(options.quiet, "--quiet"), valid]), (command) => ({
              ...command,
              // The CLI's progress is text; no per-layer events.
              progress: Stream.empty
            }))
          : pullOverApi(engine, ready, valid, options.quiet ?? false)
      ),
    run: (ref, command = [], options = {}) =>
      Effect.gen(function* () {
        const valid = yield* image("image", ref)
        const network = yield* plain("network", options.network ?? "host")
        if (runtime === "runsc" && network !== "host")
          return yield* new NestedNetworkUnsupported({ network })
        const args = [
          "run",
          "--network",
          network,
          "--pid",
          yield* plain("pid", options.pid ?? "host")
        ]
        if (options.name !== undefined) args.push("--name", yield* plain("name", options.name))
        if (options.detach) args.push("--detach")
        if (options.remove) args.push("--rm")
        for (const volume of options.volumes ?? [])
          args.push("--volume", yield* plain("volume", volume))
        for (const [key, value] of Object.entries(options.env ?? {})) {
          if (!KEY.test(key))
            return yield* new InvalidDockerArgument({
              argument: "env",
              value: key,
              problem: "is not an environment variable name"
            })
          args.push("--env", `${key}=${value}`)
        }
        args.push(valid)
        // The command runs inside the inner container: its words are its own,
        // after the image, where docker reads no options.
        for (const word of command) args.push(word)
        if (engine === undefined || loggedIn) return yield* docker(args)
        // Over the inner Engine API: no exec and no docker CLI inside.
        return yield* runOverApi(
          engine,
          ready,
          {
            argv: ["docker", ...args],
            image: valid,
            command,
            name: options.name,
            detach: options.detach ?? false,
            remove: options.remove ?? false,
            volumes: options.volumes ?? [],
            env: Object.entries(options.env ?? {}).map(([key, value]) => `${key}=${value}`),
            network,
            pid: options.pid ?? "host"
          },
          (reference) => pullOverApi(engine, Effect.void, reference, false)
        )
      }),
    build: (options) =>
      Effect.gen(function* () {
        const args = ["build", "--tag", yield* image("tag", options.tag)]
        args.push("--network", yield* plain("network", options.network ?? "host"))
        if (options.dockerfile !== undefined)
          args.push("--file", yield* plain("dockerfile", options.dockerfile))
        for (const [key, value] of Object.entries(options.buildArgs ?? {})) {
          if (!KEY.test(key))
            return yield* new InvalidDockerArgument({
              argument: "build-arg",
              value: key,
              problem: "is not a build argument name"
            })
          args.push("--build-arg", `${key}=${value}`)
        }
        args.push(...flag(options.noCache, "--no-cache"), ...flag(options.quiet, "--quiet"))
        args.push(yield* plain("context", options.context))
        return yield* docker(args)
      }),
    ps: (options = {}) =>
      docker(["ps", ...flag(options.all, "--all"), ...flag(options.quiet, "--quiet")]),
    images: (options = {}) =>
      docker(["images", ...flag(options.all, "--all"), ...flag(options.quiet, "--quiet")]),
    logs: (container, options = {}) =>
      Effect.gen(function* () {
        const args = ["logs", ...flag(options.follow, "--follow")]
        if (options.tail !== undefined) {
          if (!Number.isSafeInteger(options.tail) || options.tail < 0) {
            return yield* new InvalidDockerArgument({
              argument: "tail",
              value: String(options.tail),
              problem: "must be a whole number, 0 or more"
            })
          }
          args.push("--tail", String(options.tail))
        }
        args.push(yield* plain("container", container))
        return yield* docker(args)
      }),
    stop: (container) =>
      Effect.flatMap(plain("container", container), (valid) => docker(["stop", valid])),
    rm: (container, options = {}) =>
      Effect.flatMap(plain("container", container), (valid) =>
        docker(["rm", ...flag(options.force, "--force"), valid])
      ),
    rmi: (ref, options = {}) =>
      Effect.flatMap(image("image", ref), (valid) =>
        docker(["rmi", ...flag(options.force, "--force"), valid])
      ),
    tag: (source, target) =>
      Effect.flatMap(Effect.all([image("source", source), image("target", target)]), ([from, to]) =>
        docker(["tag", from, to])
      ),
    push: (ref) => Effect.flatMap(image("image", ref), (valid) => docker(["push", valid])),
    login: (options) =>
      Effect.gen(function* () {
        const args = [
          "login",
          "--username",
          yield* plain("username", options.username),
          "--password-stdin"
        ]
        if (options.registry !== undefined) args.push(yield* plain("registry", options.registry))
        return yield* docker(args, options.password)
      }),
    exec: (container, command) =>
      Effect.gen(function* () {
        if (command.length === 0) {
          return yield* new InvalidDockerArgument({
            argument: "command",
            value: "",
            problem: "is empty"
          })
        }
        return yield* docker(["exec", yield* plain("container", container), ...command])
      })
  }
}

/**
 * A registry login: the password is a secret, revealed only into the
 * command's standard input.
 *
 * @since 0.1.0
 * @category models
 */
export interface RegistryLogin {
  readonly username: string
  readonly password: Redacted.Redacted<string>
  /** The registry (`host[:port]`); Docker Hub when absent. */
  readonly registry?: string | undefined
}

/**
 * The automatic login before the first Docker command (with
 * `DOCKER_USERNAME` and `DOCKER_PASSWORD` in the sandbox's environment)
 * failed. Every Docker command of the sandbox fails with it. No field holds
 * the password.
 *
 * @since 0.1.0
 * @category errors
 */
export class DockerLoginFailed extends Schema.TaggedError<DockerLoginFailed>()(
  "DockerLoginFailed",
  {
    username: Schema.String,
    registry: Schema.String,
    exitCode: Schema.optional(Schema.Number),
    stderrTail: Schema.Array(Schema.String)
  }
) {
  override get message(): string {
    const tail =
      this.stderrTail.length === 0 ? "" : `:\n  ${this.stderrTail.slice(-3).join("\n  ")}`
    return `automatic login to ${this.registry} as ${this.username} (DOCKER_USERNAME and DOCKER_PASSWORD in the sandbox's environment) failed (exit code ${this.exitCode ?? "unknown"})${tail}\nCheck the credentials (and DOCKER_REGISTRY, for a registry other than Docker Hub), or remove them from the sandbox's env.`
  }
}

/**
 * The login the platform does by itself: `DOCKER_USERNAME` and
 * `DOCKER_PASSWORD` (both non-empty) in a sandbox's environment, to
 * `DOCKER_REGISTRY` when set (Docker Hub otherwise).
 *
 * @since 0.1.0
 * @category login
 */
export const loginFromEnv = (
  env: Readonly<Record<string, string>>
): Option.Option<RegistryLogin> => {
  const username = env["DOCKER_USERNAME"] ?? ""
  const password = env["DOCKER_PASSWORD"] ?? ""
  const registry = env["DOCKER_REGISTRY"] ?? ""
  return username === "" || password === ""
    ? Option.none()
    : Option.some({
        username,
        password: Redacted.make(password),
        ...(registry === "" ? {} : { registry })
      })
}

/**
 * Run as `python3 -c STORED_SCRIPT`: the docker CLI's config file in the
 * sandbox (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`) with
 * each `auths` entry emptied, so no credential leaves the sandbox; `{}`
 * when there is no file. python3 is in the image for docker-compose.
 */
const STORED_SCRIPT = `import json, os
home = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
try:
    with open(os.path.join(home, "config.json")) as file:
        config = json.load(file)
except FileNotFoundError:
    config = {}
print(json.dumps({"auths": {key: {} for key in (config.get("auths") or {})}}))`

/** What is read of the docker CLI's config: the registries it holds credentials for. */
const StoredAuths = Schema.parseJson(
  Schema.Struct({
    auths: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.Unknown }), {
      default: () => ({})
    })
  })
)

/** Docker Hub's names, as the docker CLI may key its credentials. */
const HUB = ["index.docker.io", "docker.io", "registry-1.docker.io"]

/** A registry address or config key as a host (`https://h:5000/v1/` → `h:5000`), as docker compares them. */
const registryHost = (address: string): string =>
  address.replace(/^https?:\/\//, "").split("/")[0] ?? address

/**
 * Whether the docker CLI inside the sandbox already holds credentials for
 * the registry (Docker Hub when absent): an `auths` entry in its config.
 * Anything unreadable (no python3, a config that is not JSON) counts as no:
 * the login then runs, as it would have.
 *
 * @since 0.1.0
 * @category login
 */
export const hasStoredLogin = (
  manager: ProcessManagerShape,
  registry: string | undefined
): Effect.Effect<boolean> =>
  Effect.scoped(
    Effect.gen(function* () {
      const handle = yield* manager.exec(["python3", "-c", STORED_SCRIPT], {
        tailLines: 5,
        keepOutput: 1024 * 1024,
        killGrace: "1 second"
      })
      const stdout = yield* Stream.runFold(handle.output, "", (text, chunk) =>
        chunk.source === "stdout" ? text + chunk.text : text
      )
      const status = yield* handle.awaitExit
      if (status._tag !== "Exited" || status.code !== 0) return false
      const stored = yield* Schema.decodeUnknown(StoredAuths)(stdout)
      const wanted = registry === undefined ? HUB : [registryHost(registry)]
      return Object.keys(stored.auths).some((key) => wanted.includes(registryHost(key)))
    })
  ).pipe(
    Effect.timeout("20 seconds"),
    Effect.orElseSucceed(() => false),
    Effect.withSpan("SandboxDocker.hasStoredLogin")
  )

/**
 * `ready`, followed once by the login when `login` is given: the login runs
 * (on a fiber of the current scope) as soon as Docker is ready, and every
 * Docker command waits for it. Its failure is {@link DockerLoginFailed}, its
 * password never in argv, output, logs or the error. With `unlessStored`,
 * the login is skipped when the docker CLI inside already holds credentials
 * for the registry ({@link hasStoredLogin}): for a caller that attaches to
 * the same sandbox again and again, such as the CLI.
 *
 * @since 0.1.0
 * @category login
 */
export const readyAfterLogin = <E>(
  manager: ProcessManagerShape,
  ready: Effect.Effect<DockerDaemon, E>,
  login: Option.Option<RegistryLogin>,
  options: { readonly unlessStored?: boolean } = {}
): Effect.Effect<Effect.Effect<DockerDaemon, E | DockerLoginFailed>, never, Scope.Scope> =>
  Option.match(login, {
    onNone: () => Effect.succeed(ready),
    onSome: (credentials) =>
      Effect.gen(function* () {
        const done = yield* Deferred.make<DockerDaemon, E | DockerLoginFailed>()
        const loginOnce = Effect.gen(function* () {
          if (
            options.unlessStored === true &&
            (yield* hasStoredLogin(manager, credentials.registry))
          ) {
            return yield* Effect.logDebug(
              "login skipped: the docker CLI inside holds credentials"
            ).pipe(Effect.annotateLogs({ registry: credentials.registry ?? "Docker Hub" }))
          }
          yield* loginNow(manager, ready, credentials)
        })
        yield* ready.pipe(
          Effect.tap(() => loginOnce),
          Effect.intoDeferred(done),
          Effect.forkScoped
        )
        return Deferred.await(done)
      })
  })

/** `docker login --password-stdin`, its failure as DockerLoginFailed. */
const loginNow = <E>(
  manager: ProcessManagerShape,
  ready: Effect.Effect<DockerDaemon, E>,
  credentials: RegistryLogin
): Effect.Effect<void, E | DockerLoginFailed> => {
  const failed = (exitCode: number | undefined, tail: ReadonlyArray<string>) =>
    new DockerLoginFailed({
      username: credentials.username,
      registry: credentials.registry ?? "Docker Hub",
      ...(exitCode === undefined ? {} : { exitCode }),
      stderrTail: tail.map((line) => redactText(line, [credentials.password]))
    })
  return Effect.scoped(
    Effect.gen(function* () {
      const args = ["login", "--username", credentials.username, "--password-stdin"]
      if (credentials.registry !== undefined) args.push(credentials.registry)
      for (const value of [credentials.username, credentials.registry ?? ""]) {
        if (value.startsWith("-") || value.includes("\0"))
          return yield* failed(undefined, [`${JSON.stringify(value)} is not a user or registry`])
      }
      const command = yield* runDocker(manager, ready, args, {
        stdin: credentials.password
      }).pipe(
        Effect.catchIf(
          (error): error is DockerCommandFailed => error instanceof DockerCommandFailed,
          (error) => Effect.fail(failed(error.exitCode, error.stderrTail))
        )
      )
      const code = yield* command.exitCode
      if (code !== 0) return yield* failed(code, yield* command.process.logTail)
    })
  ).pipe(Effect.withSpan("SandboxDocker.loginFromEnv"))
}

/**
 * Kills and removes every container of the Docker inside (each step bounded),
 * before dockerd itself is stopped.
 *
 * @since 0.1.0
 * @category cleanup
 */
export const removeInnerContainers = (manager: ProcessManagerShape): Effect.Effect<void> =>
  Effect.scoped(
    Effect.gen(function* () {
      const list = yield* manager.exec(["docker", "ps", "--all", "--quiet"], {
        tailLines: 10_000,
        killGrace: "1 second"
      })
      yield* list.awaitExit
      const ids = (yield* list.logTail).filter((line) => /^[0-9a-f]{12,64}$/.test(line.trim()))
      if (ids.length === 0) return
      const remove = yield* manager.exec(["docker", "rm", "--force", "--volumes", ...ids], {
        killGrace: "1 second"
      })
      yield* remove.awaitExit
    })
  ).pipe(Effect.timeout("20 seconds"), Effect.ignore)
