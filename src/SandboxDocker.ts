/**
 * `sandbox.docker`: Docker commands run inside a sandbox through its process
 * manager. Each validates its arguments before anything runs (image
 * references by Schema; any value that would reach docker as an option is
 * refused), waits for Docker inside lazily, and returns a handle: the exit
 * code, a live Stream of log lines, the collected output.
 *
 * @since 0.1.0
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { DockerDaemon } from "./Dockerd.js"
import {
  type DockerCommand,
  DockerCommandFailed,
  flag,
  InvalidDockerArgument,
  KEY,
  plain,
  runDocker
} from "./internal/dockerCommand.js"
import type { ProcessManagerShape } from "./ProcessManager.js"
import { redactText } from "./Redaction.js"
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
  DockerUnavailable | DockerLoginFailed | InvalidDockerArgument | DockerCommandFailed

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
 * The Docker commands of one sandbox.
 *
 * @since 0.1.0
 * @category models
 */
export interface SandboxDocker {
  readonly pull: (
    image: string,
    options?: { readonly quiet?: boolean }
  ) => Effect.Effect<DockerCommand, DockerError, Scope.Scope>
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
  const docker = (args: ReadonlyArray<string>, stdin?: Redacted.Redacted<string>) =>
    runDocker(manager, ready, args, { stdin })
  const runtime = makeOptions.runtime ?? "runc"
  return {
    runtime,
    compose: SandboxCompose.make(manager, ready, runtime),
    volume: SandboxVolume.make(manager, ready),
    pull: (ref, options = {}) =>
      Effect.flatMap(image("image", ref), (valid) =>
        docker(["pull", ...flag(options.quiet, "--quiet"), valid])
      ),
    run: (ref, command = [], options = {}) =>
      Effect.gen(function* () {
        const valid = yield* image("image", ref)
        const args = [
          "run",
          "--network",
          yield* plain("network", options.network ?? "host"),
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
        return yield* docker(args)
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
 * `ready`, followed once by the login when `login` is given: the login runs
 * (on a fiber of the current scope) as soon as Docker is ready, and every
 * Docker command waits for it. Its failure is {@link DockerLoginFailed}, its
 * password never in argv, output, logs or the error.
 *
 * @since 0.1.0
 * @category login
 */
export const readyAfterLogin = <E>(
  manager: ProcessManagerShape,
  ready: Effect.Effect<DockerDaemon, E>,
  login: Option.Option<RegistryLogin>
): Effect.Effect<Effect.Effect<DockerDaemon, E | DockerLoginFailed>, never, Scope.Scope> =>
  Option.match(login, {
    onNone: () => Effect.succeed(ready),
    onSome: (credentials) =>
      Effect.gen(function* () {
        const done = yield* Deferred.make<DockerDaemon, E | DockerLoginFailed>()
        yield* ready.pipe(
          Effect.tap(() => loginNow(manager, ready, credentials)),
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
