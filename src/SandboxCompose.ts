/**
 * `sandbox.docker.compose`: Compose projects inside a sandbox, run by the
 * `docker-compose` of the sandbox image (Debian bookworm's 1.29.2) against
 * the Docker inside.
 *
 * The compose file is given as text or as a path inside the sandbox. Text
 * goes in through the standard input of one exec (never a command line) and
 * lives in a temp directory of the sandbox (`mode 0700`) until the command's
 * scope closes. Every argument is checked before anything runs: project and
 * service names by Schema, paths absolute, nothing that docker-compose
 * would read as an option.
 *
 * Under gVisor (`runsc`) Docker inside has no network of its own to give
 * its containers: they share the sandbox's, as `run`'s do. Each command then
 * adds an override file giving every service `network_mode: host`, after
 * reading the file as docker-compose normalises it (`docker-compose config`,
 * as JSON, decoded by Schema); a file that asks for networks of its own
 * (`networks`, `links`, another `network_mode`) fails with
 * {@link ComposeNetworkUnsupported} before anything is created. A version 1
 * file (services at the top level) gets a version 1 override (`net: host`). On either
 * runtime, `up` and `build` give build steps the sandbox's network the same
 * way (`build.network: host`), as `build` does: there is no bridge for them.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { DockerDaemon } from "./Dockerd.js"
import type { BinaryNotFound, SpawnFailed } from "./errors.js"
import {
  checked,
  type DockerCommand,
  DockerCommandFailed,
  DockerOutputInvalid,
  flag,
  InvalidDockerArgument,
  runInSandbox,
  SandboxPath,
  tailLines
} from "./internal/dockerCommand.js"
import type { ProcessManagerShape } from "./ProcessManager.js"
import type { DockerUnavailable } from "./Sandbox.js"
import type { DockerError, DockerLoginFailed, Runtime } from "./SandboxDocker.js"

/** The longest compose text accepted (1 MiB). */
const MAX_TEXT = 1024 * 1024

/**
 * A compose file: its text, or a path inside the sandbox.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ComposeFile = Schema.Union(
  Schema.Struct({
    text: Schema.String.pipe(
      Schema.maxLength(MAX_TEXT),
      Schema.filter((text) => !text.includes("\0") || "contains a NUL byte")
    )
  }),
  Schema.Struct({ path: SandboxPath })
).annotations({ identifier: "ComposeFile" })

/**
 * @since 0.1.0
 * @category models
 */
export type ComposeFile = typeof ComposeFile.Type

/**
 * A project name as docker-compose keeps it: lowercase letters, digits, `_`
 * and `-`, starting with a letter or digit.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ProjectName = Schema.String.pipe(
  Schema.pattern(/^[a-z0-9][a-z0-9_-]{0,62}$/),
  Schema.annotations({ identifier: "ProjectName" })
)

/**
 * A service name: letters, digits, `.`, `_` and `-`, starting with a letter
 * or digit.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ServiceName = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/),
  Schema.annotations({ identifier: "ServiceName" })
)

/**
 * Under gVisor a service asked for a network of its own, which Docker inside
 * cannot give there.
 *
 * @since 0.1.0
 * @category errors
 */
export class ComposeNetworkUnsupported extends Schema.TaggedError<ComposeNetworkUnsupported>()(
  "ComposeNetworkUnsupported",
  {
    project: Schema.String,
    /** The service that asks, or none for the file's top-level `networks`. */
    service: Schema.optional(Schema.String),
    /** What it asks for, as written in the file. */
    setting: Schema.String,
    /** What to change, when it is more than removing the setting. */
    fix: Schema.optional(Schema.String)
  }
) {
  override get message(): string {
    const who = this.service === undefined ? "the file" : `service ${this.service}`
    const fix = this.fix ?? `Remove ${this.setting} from the file, or use a runc sandbox.`
    return `compose project ${this.project}: ${who} asks for ${this.setting}, but under gVisor (runsc) Docker inside the sandbox has no network of its own to give (no bridge, no iptables): every service runs with network_mode: host, set by an override file, and reaches the others on localhost. ${fix}`
  }
}

/**
 * The sandbox has no `docker-compose` (or not the Python one this module
 * drives).
 *
 * @since 0.1.0
 * @category errors
 */
export class ComposeNotInstalled extends Schema.TaggedError<ComposeNotInstalled>()(
  "ComposeNotInstalled",
  { binary: Schema.String, searched: Schema.Array(Schema.String) }
) {
  override get message(): string {
    const where = this.searched.length > 0 ? ` (searched ${this.searched.join(":")})` : ""
    return `${this.binary} is not in the sandbox${where}: use an image with Debian's docker-compose (scripts/build-images.sh's sandbox-docker/debian-docker:bookworm has it), or install it there (apt-get install docker-compose).`
  }
}

/**
 * Every way a compose command fails.
 *
 * @since 0.1.0
 * @category errors
 */
export type ComposeError =
  DockerError | ComposeNetworkUnsupported | ComposeNotInstalled | DockerOutputInvalid

/**
 * The project every compose command names.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProjectOptions {
  /** The compose file: `{ text }` or `{ path }` (inside the sandbox). */
  readonly file: ComposeFile
  /** The project name (`docker-compose --project-name`): `down` finds `up`'s containers by it. */
  readonly project: string
  /**
   * Where the file's relative paths (build contexts, bind mounts, `.env`)
   * point: a path inside the sandbox. Default: the file's directory (for
   * text, its temp directory).
   */
  readonly projectDirectory?: string | undefined
}

/**
 * Compose commands in a sandbox. Each returns the running command; its
 * `lines` stream as docker-compose prints them.
 *
 * @since 0.1.0
 * @category models
 */
export interface SandboxCompose {
  /** `up --detach`: creates and starts the services (pulling images first; building with `build`). */
  readonly up: (
    options: ProjectOptions & {
      readonly build?: boolean
      readonly services?: ReadonlyArray<string>
    }
  ) => Effect.Effect<DockerCommand, ComposeError, Scope.Scope>
  /** `down`: stops and removes the containers and networks, and with `volumes` the volumes. */
  readonly down: (
    options: ProjectOptions & {
      readonly volumes?: boolean
      readonly removeOrphans?: boolean
    }
  ) => Effect.Effect<DockerCommand, ComposeError, Scope.Scope>
  /** `ps`: the project's containers, as a table. */
  readonly ps: (
    options: ProjectOptions & { readonly all?: boolean; readonly services?: ReadonlyArray<string> }
  ) => Effect.Effect<DockerCommand, ComposeError, Scope.Scope>
  /** `logs`: with `follow`, a live stream until the services stop or the scope closes. */
  readonly logs: (
    options: ProjectOptions & {
      readonly follow?: boolean
      readonly tail?: number
      readonly services?: ReadonlyArray<string>
    }
  ) => Effect.Effect<DockerCommand, ComposeError, Scope.Scope>
  /** `build`: builds the services that have a `build` section. */
  readonly build: (
    options: ProjectOptions & {
      readonly noCache?: boolean
      readonly pull?: boolean
      readonly services?: ReadonlyArray<string>
    }
  ) => Effect.Effect<DockerCommand, ComposeError, Scope.Scope>
}

/** The name the compose text gets in its temp directory. */
const FILE_NAME = "docker-compose.yml"
/** The override file under gVisor. */
const OVERRIDE_NAME = "sandbox-docker.override.yml"
const COMPOSE = "docker-compose"
const PYTHON = "python3"

/**
 * Run as `sh -c TEMP_SCRIPT sh NAME`: makes a private temp directory and,
 * when NAME is not empty, writes standard input to NAME in it; prints the
 * directory. No value reaches the shell as code.
 */
const TEMP_SCRIPT = `umask 077
dir=$(mktemp -d "\${TMPDIR:-/tmp}/sandbox-docker-compose.XXXXXX") || exit 1
if [ -n "$1" ]; then cat >"$dir/$1" || exit 1; fi
printf 'sandbox-docker:dir:%s\\n' "$dir"`

const DIR_LINE = /^sandbox-docker:dir:(\/.*)$/

/** Run as `sh -c WRITE_SCRIPT sh PATH`: standard input to PATH. */
const WRITE_SCRIPT = `umask 077
cat >"$1"`

/**
 * Run as `python3 -c CONFIG_SCRIPT docker-compose ... config`: the file as
 * docker-compose normalises it (YAML), printed as JSON. python3 and its yaml
 * module are docker-compose's own dependencies.
 */
const CONFIG_SCRIPT = `import json, subprocess, sys, yaml
done = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE)
if done.returncode != 0:
    sys.exit(done.returncode)
json.dump(yaml.safe_load(done.stdout), sys.stdout)`

/** What is read of a normalised file: what says which networks it wants. */
const NormalisedService = Schema.Struct({
  network_mode: Schema.optional(Schema.String),
  networks: Schema.optional(Schema.Unknown),
  links: Schema.optional(Schema.Unknown),
  build: Schema.optional(Schema.Struct({ network: Schema.optional(Schema.String) }))
})
const NormalisedConfig = Schema.parseJson(
  Schema.Struct({
    version: Schema.optional(Schema.String),
    services: Schema.optionalWith(Schema.Record({ key: Schema.String, value: NormalisedService }), {
      default: () => ({})
    }),
    networks: Schema.optional(
      Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.Unknown }))
    )
  })
)
/**
 * What is read of a compose file as docker-compose normalises it: its
 * version, and each service's network settings.
 *
 * @since 0.1.0
 * @category gvisor
 */
export type NormalisedConfig = typeof NormalisedConfig.Type

/** A file in the version 1 format (services at the top level, no `version` key). */
const isVersion1 = (config: NormalisedConfig): boolean =>
  config.version !== undefined && /^1(\.|$)/.test(config.version)

/** What to do with a version 1 file whose builds need the sandbox's network. */
const TO_VERSION_2 =
  'Make it a version 2 file: add `version: "2"` at its top and move the services under a `services:` key; its build steps then get the sandbox\'s network (build.network: host).'

/**
 * What under gVisor cannot be given: the first setting found, in the order
 * of the file's services (by name). A version 1 file's services all get
 * `network_mode: bridge` from docker-compose (its default, not a request),
 * which the override replaces; a `build` there is refused, since that
 * format cannot give build steps a network.
 *
 * @since 0.1.0
 * @category gvisor
 */
export const networkSettingRefused = (
  project: string,
  config: NormalisedConfig
): ComposeNetworkUnsupported | undefined => {
  const version1 = isVersion1(config)
  const networks = Object.keys(config.networks ?? {})
  if (networks.length > 0) {
    return new ComposeNetworkUnsupported({
      project,
      setting: `networks (${networks.join(", ")})`
    })
  }
  for (const [service, settings] of Object.entries(config.services).sort(([a], [b]) =>
    a.localeCompare(b)
  )) {
    if (settings.networks !== undefined)
      return new ComposeNetworkUnsupported({ project, service, setting: "networks" })
    if (settings.links !== undefined)
      return new ComposeNetworkUnsupported({ project, service, setting: "links" })
    const mode = settings.network_mode
    if (mode !== undefined && mode !== "host" && !(version1 && mode === "bridge"))
      return new ComposeNetworkUnsupported({
        project,
        service,
        setting: `network_mode: ${mode}`
      })
    if (version1 && settings.build !== undefined)
      return new ComposeNetworkUnsupported({
        project,
        service,
        setting: "build in the version 1 format (no way to give its build steps a network)",
        fix: TO_VERSION_2
      })
  }
  return undefined
}

/**
 * The override file for a runtime, as JSON (which YAML reads as it is), in
 * the file's own version, or none when nothing is to change. Build steps
 * (`RUN`) get the sandbox's network (`build.network: host`, unless the file
 * names one), as `build`'s do: Docker inside has no bridge for them. Under
 * `runsc` every service also gets `network_mode: host`. A version 1 file
 * gets a version 1 override (docker-compose refuses to mix versions): under
 * `runsc` `net: host` for every service, on runc nothing (that format has
 * no build network, and its builds need none there).
 *
 * @since 0.1.0
 * @category gvisor
 */
export const overrideFor = (config: NormalisedConfig, runtime: Runtime): string | undefined => {
  if (isVersion1(config)) {
    const names = Object.keys(config.services)
    return runtime !== "runsc" || names.length === 0
      ? undefined
      : JSON.stringify(Object.fromEntries(names.map((name) => [name, { net: "host" }]))) + "\n"
  }
  const services = Object.entries(config.services).flatMap(([service, settings]) => {
    const build =
      settings.build !== undefined && settings.build.network === undefined
        ? { build: { network: "host" } }
        : {}
    const network = runtime === "runsc" ? { network_mode: "host" } : {}
    return Object.keys(build).length + Object.keys(network).length === 0
      ? []
      : [[service, { ...network, ...build }] as const]
  })
  if (services.length === 0) return undefined
  return (
    JSON.stringify({
      ...(config.version === undefined ? {} : { version: config.version }),
      services: Object.fromEntries(services)
    }) + "\n"
  )
}

/**
 * The compose commands of a sandbox.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  manager: ProcessManagerShape,
  ready: Effect.Effect<DockerDaemon, DockerUnavailable | DockerLoginFailed>,
  runtime: Runtime
): SandboxCompose => {
  const notInstalled = (error: BinaryNotFound | SpawnFailed, argv: ReadonlyArray<string>) =>
    error._tag === "BinaryNotFound"
      ? new ComposeNotInstalled({ binary: error.binary, searched: error.searched })
      : new DockerCommandFailed({ argv, stderrTail: [error.message] })

  /** A short helper command in the sandbox (not docker-compose), to its end. */
  const shortCommand = (argv: readonly [string, ...Array<string>], stdin: string) =>
    Effect.scoped(
      Effect.gen(function* () {
        const handle = yield* manager
          .exec(argv, { stdin, tailLines: 20, killGrace: "1 second" })
          .pipe(Effect.mapError((error) => notInstalled(error, argv)))
        const status = yield* handle.awaitExit
        const tail = yield* handle.logTail
        if (status._tag !== "Exited" || status.code !== 0) {
          return yield* new DockerCommandFailed({
            argv,
            ...(status._tag === "Exited" ? { exitCode: status.code } : { signal: status.signal }),
            stderrTail: tail
          })
        }
        return tail
      })
    )

  /** A private temp directory (with `name` written from `text`), removed when the scope closes. */
  const tempDir = (name: string, text: string) =>
    Effect.acquireRelease(
      Effect.flatMap(shortCommand(["sh", "-c", TEMP_SCRIPT, "sh", name], text), (tail) => {
        const dir = tail.map((line) => DIR_LINE.exec(line)?.[1]).find((d) => d !== undefined)
        return dir === undefined
          ? Effect.fail(
              new DockerCommandFailed({
                argv: ["sh", "-c", "(make a temp directory)"],
                stderrTail: tail
              })
            )
          : Effect.succeed(dir)
      }),
      (dir) =>
        Effect.ignore(Effect.timeout(shortCommand(["rm", "-rf", "--", dir], ""), "20 seconds"))
    )

  /** The global options naming the project and its files. */
  const projectArgs = (
    project: string,
    files: ReadonlyArray<string>,
    projectDirectory: string | undefined
  ) => [
    "--ansi",
    "never",
    "--project-name",
    project,
    ...files.flatMap((file) => ["--file", file]),
    ...(projectDirectory === undefined ? [] : ["--project-directory", projectDirectory])
  ]

  const composeEnv = (daemon: DockerDaemon) => ({ DOCKER_HOST: `unix://${daemon.socket}` })

  /**
   * The project's files in the sandbox, checked: the given one (text
   * written to a temp directory) and, under gVisor, the override.
   */
  const projectFiles = (options: ProjectOptions, builds: boolean) =>
    Effect.gen(function* () {
      const project = yield* checked(
        ProjectName,
        "project",
        options.project,
        "is not a compose project name: lowercase letters, digits, _ and -, starting with a letter or digit"
      )
      const file = yield* Schema.decodeUnknown(ComposeFile)(options.file).pipe(
        Effect.mapError(
          () =>
            new InvalidDockerArgument({
              argument: "file",
              value: "path" in options.file ? options.file.path : "(compose text)",
              problem:
                "is neither { text } (up to 1 MiB, no NUL byte) nor { path } (an absolute path inside the sandbox)"
            })
        )
      )
      const projectDirectory =
        options.projectDirectory === undefined
          ? undefined
          : yield* checked(
              SandboxPath,
              "projectDirectory",
              options.projectDirectory,
              "is not an absolute path inside the sandbox"
            )
      const files: Array<string> = []
      let dir: string | undefined
      if ("text" in file) {
        dir = yield* tempDir(FILE_NAME, file.text)
        files.push(`${dir}/${FILE_NAME}`)
      } else {
        files.push(file.path)
      }
      // Under runsc every command needs the override; on runc only those that may build.
      if (runtime === "runsc" || builds) {
        const config = yield* normalised(project, files, projectDirectory)
        if (runtime === "runsc") {
          const refused = networkSettingRefused(project, config)
          if (refused !== undefined) return yield* refused
        }
        const text = overrideFor(config, runtime)
        if (text !== undefined) {
          dir ??= yield* tempDir("", "")
          const override = `${dir}/${OVERRIDE_NAME}`
          yield* shortCommand(["sh", "-c", WRITE_SCRIPT, "sh", override], text)
          files.push(override)
        }
      }
      return projectArgs(project, files, projectDirectory)
    })

  /** The file as docker-compose normalises it. */
  const normalised = (
    project: string,
    files: ReadonlyArray<string>,
    projectDirectory: string | undefined
  ) =>
    Effect.scoped(
      Effect.gen(function* () {
        const command = yield* runInSandbox(
          manager,
          ready,
          () => [
            PYTHON,
            "-c",
            CONFIG_SCRIPT,
            COMPOSE,
            ...projectArgs(project, files, projectDirectory),
            "config"
          ],
          {
            env: composeEnv,
            spawnError: notInstalled,
            span: { name: "SandboxCompose.config", attributes: { project } }
          }
        )
        const output = yield* command.output
        return yield* Schema.decodeUnknown(NormalisedConfig)(output.stdout).pipe(
          Effect.mapError(
            (error) =>
              new DockerOutputInvalid({
                argv: [COMPOSE, "config"],
                problem: error.message.split("\n").slice(-1)[0] ?? error.message
              })
          )
        )
      })
    )

  const services = (names: ReadonlyArray<string> | undefined) =>
    Effect.forEach(names ?? [], (name) =>
      checked(
        ServiceName,
        "service",
        name,
        "is not a service name: letters, digits, . _ and -, starting with a letter or digit"
      )
    )

  /** `docker-compose GLOBAL VERB ARGS`, the project's files prepared in the command's scope. */
  const compose = (
    verb: string,
    options: ProjectOptions,
    args: Effect.Effect<ReadonlyArray<string>, InvalidDockerArgument>
  ): Effect.Effect<DockerCommand, ComposeError, Scope.Scope> =>
    Effect.gen(function* () {
      const verbArgs = yield* args
      const global = yield* projectFiles(options, verb === "up" || verb === "build")
      return yield* runInSandbox(manager, ready, () => [COMPOSE, ...global, verb, ...verbArgs], {
        env: composeEnv,
        spawnError: notInstalled,
        span: { name: `SandboxCompose.${verb}`, attributes: { project: options.project, runtime } }
      })
    })

  return {
    up: (options) =>
      compose(
        "up",
        options,
        Effect.map(services(options.services), (names) => [
          "--detach",
          ...flag(options.build, "--build"),
          ...names
        ])
      ),
    down: (options) =>
      compose(
        "down",
        options,
        Effect.succeed([
          ...flag(options.volumes, "--volumes"),
          ...flag(options.removeOrphans, "--remove-orphans")
        ])
      ),
    ps: (options) =>
      compose(
        "ps",
        options,
        Effect.map(services(options.services), (names) => [...flag(options.all, "--all"), ...names])
      ),
    logs: (options) =>
      compose(
        "logs",
        options,
        Effect.gen(function* () {
          const args = ["--no-color", ...flag(options.follow, "--follow")]
          if (options.tail !== undefined) args.push("--tail", yield* tailLines(options.tail))
          return [...args, ...(yield* services(options.services))]
        })
      ),
    build: (options) =>
      compose(
        "build",
        options,
        Effect.map(services(options.services), (names) => [
          ...flag(options.noCache, "--no-cache"),
          ...flag(options.pull, "--pull"),
          ...names
        ])
      )
  }
}
