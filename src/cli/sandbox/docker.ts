/**
 * `sandbox-docker sandbox docker NAME COMMAND [ARG...]`: a docker command
 * run against Docker inside a sandbox created with `--docker`, once that
 * Docker is ready: pull, run, ps, images, logs, rm, rmi, build, compose
 * (up, down, ps, logs, build) and volume (create, ls, inspect, rm).
 *
 * With `DOCKER_USERNAME` and `DOCKER_PASSWORD` in the sandbox's environment
 * it logs in first, unless the docker CLI inside already holds credentials
 * for that registry (an earlier invocation's login), the password through
 * stdin and redacted everywhere. The
 * output of pull, build and compose comes as it is printed, a line at a
 * time (`--json`: `line` events); the other commands' output is forwarded
 * as it comes (`output` events).
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Options from "@effect/cli/Options"
import * as NodeStream from "@effect/platform-node/NodeStream"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { ProcessManagerShape } from "../../ProcessManager.js"
import type { ReadinessPolicy } from "../../ReadinessPolicy.js"
import * as Sandbox from "../../Sandbox.js"
import type * as SandboxCompose from "../../SandboxCompose.js"
import * as SandboxDocker from "../../SandboxDocker.js"
import * as Detached from "../detachedDockerd.js"
import * as Shared from "../options.js"
import * as Planned from "../planned.js"
import { attach } from "./lookup.js"
import * as SandboxOptions from "./options.js"
import { forward } from "./output.js"

const DOCKER_VERBS = [
  "pull",
  "run",
  "ps",
  "images",
  "logs",
  "rm",
  "rmi",
  "build",
  "compose",
  "volume"
] as const

/**
 * A docker command `sandbox docker` runs.
 *
 * @since 0.1.0
 * @category models
 */
export type DockerVerb = (typeof DOCKER_VERBS)[number]

const COMPOSE_VERBS = ["up", "down", "ps", "logs", "build"] as const
const VOLUME_VERBS = ["create", "ls", "inspect", "rm"] as const

/**
 * The options of `sandbox docker` beyond the engine, deadline and `--json`,
 * as given (each verb takes some of them; the others are refused).
 *
 * @since 0.1.0
 * @category models
 */
export interface DockerFlags {
  readonly tag?: string | undefined
  /** build: the Dockerfile (in the sandbox); compose: the compose file (in the sandbox), `-` for stdin. */
  readonly file?: string | undefined
  readonly buildArgs: Readonly<Record<string, string>>
  readonly noCache: boolean
  readonly project?: string | undefined
  readonly projectDirectory?: string | undefined
  readonly volumes: boolean
  readonly build: boolean
  readonly follow: boolean
  readonly tail?: number | undefined
  readonly labels: Readonly<Record<string, string>>
  readonly force: boolean
}

/**
 * What `sandbox docker` will do, validated (the docker arguments are
 * validated again by `SandboxDocker` before anything runs).
 *
 * @since 0.1.0
 * @category models
 */
export interface SandboxDockerPlan {
  readonly _tag: "SandboxDocker"
  readonly engine: string
  readonly sandbox: string
  readonly verb: DockerVerb
  readonly args: ReadonlyArray<string>
  readonly flags: DockerFlags
  readonly policy: ReadinessPolicy
  readonly json: boolean
}

const optionalText = (name: string, pseudo: string, description: string) =>
  Shared.text(name, pseudo, description)

const config = {
  engine: SandboxOptions.engine,
  deadline: Shared.duration(
    "deadline",
    "give up when Docker inside is not ready after this long (default 60s)"
  ),
  json: Shared.json,
  tag: optionalText("tag", "IMAGE", "build: the image's name and tag"),
  file: optionalText(
    "file",
    "PATH",
    "build: the Dockerfile (a path in the sandbox); compose: the compose file (a path in the sandbox, or - to read it from stdin)"
  ),
  buildArg: Options.text("build-arg").pipe(
    Options.withPseudoName("KEY=VALUE"),
    Options.withDescription("build: a build argument (repeatable)"),
    Options.repeated
  ),
  noCache: Options.boolean("no-cache").pipe(
    Options.withDescription("build, compose build: do not use the build cache")
  ),
  project: optionalText("project", "NAME", "compose: the project name (required)"),
  projectDirectory: optionalText(
    "project-directory",
    "PATH",
    "compose: where the file's relative paths point (a path in the sandbox)"
  ),
  volumes: Options.boolean("volumes").pipe(
    Options.withDescription("compose down: remove the project's volumes too")
  ),
  build: Options.boolean("build").pipe(
    Options.withDescription("compose up: build the images first")
  ),
  follow: Options.boolean("follow").pipe(
    Options.withDescription("logs, compose logs: keep streaming new lines")
  ),
  tail: Shared.whole("tail", "logs, compose logs: only the last N lines"),
  label: Options.text("label").pipe(
    Options.withPseudoName("KEY=VALUE"),
    Options.withDescription("volume create: a label (repeatable)"),
    Options.repeated
  ),
  force: Options.boolean("force").pipe(
    Options.withDescription("rm, rmi, volume rm: force the removal")
  ),
  sandbox: SandboxOptions.sandbox,
  verb: Args.choice(
    DOCKER_VERBS.map((verb) => [verb, verb] as const),
    { name: "COMMAND" }
  ).pipe(Args.withDescription(`one of ${DOCKER_VERBS.join(", ")}`)),
  args: Args.text({ name: "ARG" }).pipe(
    Args.withDescription(
      "pull IMAGE | run IMAGE [CMD...] | ps | images | logs C | rm C | rmi IMAGE | build CONTEXT | compose up|down|ps|logs|build [SERVICE...] | volume create|ls|inspect|rm [NAME]"
    ),
    Args.repeated
  )
}

/** How many arguments each verb takes: [min, max]. */
const ARITY: Readonly<Record<DockerVerb, readonly [number, number]>> = {
  pull: [1, 1],
  run: [1, Number.POSITIVE_INFINITY],
  ps: [0, 0],
  images: [0, 0],
  logs: [1, 1],
  rm: [1, 1],
  rmi: [1, 1],
  build: [1, 1],
  compose: [1, Number.POSITIVE_INFINITY],
  volume: [1, 2]
}

type FlagName = Exclude<
  keyof typeof config,
  "engine" | "deadline" | "json" | "sandbox" | "verb" | "args"
>

/** The options each verb (and sub-verb) takes. */
const ACCEPTS: Readonly<Record<string, ReadonlyArray<FlagName>>> = {
  pull: [],
  run: [],
  ps: [],
  images: [],
  logs: ["follow", "tail"],
  rm: ["force"],
  rmi: ["force"],
  build: ["tag", "file", "buildArg", "noCache"],
  "compose up": ["file", "project", "projectDirectory", "build"],
  "compose down": ["file", "project", "projectDirectory", "volumes"],
  "compose ps": ["file", "project", "projectDirectory"],
  "compose logs": ["file", "project", "projectDirectory", "follow", "tail"],
  "compose build": ["file", "project", "projectDirectory", "noCache"],
  "volume create": ["label"],
  "volume ls": [],
  "volume inspect": [],
  "volume rm": ["force"]
}

const OPTION_NAMES: Readonly<Record<FlagName, string>> = {
  tag: "tag",
  file: "file",
  buildArg: "build-arg",
  noCache: "no-cache",
  project: "project",
  projectDirectory: "project-directory",
  volumes: "volumes",
  build: "build",
  follow: "follow",
  tail: "tail",
  label: "label",
  force: "force"
}

const isGiven = (value: unknown): boolean =>
  Option.isOption(value)
    ? Option.isSome(value)
    : Array.isArray(value)
      ? value.length > 0
      : value === true

/** `KEY=VALUE` entries of a repeated option. */
const pairs = (option: string, entries: ReadonlyArray<string>, key: RegExp) =>
  Effect.gen(function* () {
    const out: Record<string, string> = {}
    for (const entry of entries) {
      const equals = entry.indexOf("=")
      const name = equals < 0 ? entry : entry.slice(0, equals)
      if (equals < 0 || !key.test(name) || entry.includes("\0")) {
        return yield* new Shared.InvalidArguments({
          option,
          problem: `${JSON.stringify(entry)} is not KEY=VALUE`
        })
      }
      out[name] = entry.slice(equals + 1)
    }
    return out
  })

const plan = (
  opts: Shared.ValuesOf<typeof config>
): Effect.Effect<SandboxDockerPlan, Shared.CliInputError> =>
  Effect.gen(function* () {
    const [min, max] = ARITY[opts.verb]
    if (opts.args.length < min || opts.args.length > max) {
      return yield* new Shared.InvalidUsage({
        problem: `docker ${opts.verb} takes ${min === max ? min : `at least ${min}`} argument${max === 1 ? "" : "s"}, not ${opts.args.length}`
      })
    }
    const sub = opts.args[0] ?? ""
    const key =
      opts.verb === "compose" || opts.verb === "volume" ? `${opts.verb} ${sub}` : opts.verb
    const accepted = ACCEPTS[key]
    if (accepted === undefined) {
      const subs = opts.verb === "compose" ? COMPOSE_VERBS : VOLUME_VERBS
      return yield* new Shared.InvalidUsage({
        problem: `docker ${opts.verb} ${JSON.stringify(sub)}: expected one of ${subs.join(", ")}`
      })
    }
    for (const name of Object.keys(OPTION_NAMES) as Array<FlagName>) {
      if (isGiven(opts[name]) && !accepted.includes(name)) {
        return yield* new Shared.InvalidUsage({
          problem: `--${OPTION_NAMES[name]} is not an option of docker ${key}`
        })
      }
    }
    if (opts.verb === "volume") {
      const wantsName = sub !== "ls"
      if (wantsName !== (opts.args.length === 2)) {
        return yield* new Shared.InvalidUsage({
          problem: wantsName
            ? `docker volume ${sub} takes a NAME`
            : "docker volume ls takes no NAME"
        })
      }
    }
    if (opts.verb === "build" && Option.isNone(opts.tag)) {
      return yield* new Shared.InvalidUsage({ problem: "docker build needs --tag" })
    }
    if (opts.verb === "compose") {
      if (Option.isNone(opts.project) || Option.isNone(opts.file)) {
        return yield* new Shared.InvalidUsage({
          problem: "docker compose needs --project NAME and --file PATH (or --file - for stdin)"
        })
      }
      if (sub === "down" && opts.args.length > 1) {
        return yield* new Shared.InvalidUsage({ problem: "docker compose down takes no SERVICE" })
      }
    }
    const tail = yield* Shared.decodeWhole("tail", opts.tail, { min: 0, max: 1_000_000_000 })
    const policy = yield* SandboxOptions.dockerReadiness(opts.deadline)
    const flags: DockerFlags = {
      tag: Option.getOrUndefined(opts.tag),
      file: Option.getOrUndefined(opts.file),
      buildArgs: yield* pairs("build-arg", opts.buildArg, /^[A-Za-z_][A-Za-z0-9_]*$/),
      noCache: opts.noCache,
      project: Option.getOrUndefined(opts.project),
      projectDirectory: Option.getOrUndefined(opts.projectDirectory),
      volumes: opts.volumes,
      build: opts.build,
      follow: opts.follow,
      tail: Option.getOrUndefined(tail),
      labels: yield* pairs("label", opts.label, /^[A-Za-z0-9][A-Za-z0-9._/-]*$/),
      force: opts.force
    }
    return {
      _tag: "SandboxDocker",
      engine: yield* SandboxOptions.decodeEngine(opts.engine),
      sandbox: yield* SandboxOptions.decodeSandbox(opts.sandbox),
      verb: opts.verb,
      args: opts.args,
      flags,
      policy,
      json: opts.json
    } as const
  })

/** Docker inside the sandbox, waited for until `docker info` answers. */
const dockerReady = (
  manager: ProcessManagerShape,
  found: { readonly name: string; readonly docker: boolean },
  policy: ReadinessPolicy
) =>
  Effect.gen(function* () {
    if (!found.docker) return yield* new Sandbox.DockerNotEnabled({ sandbox: found.name })
    const config = yield* Detached.attachConfig
    const state = yield* Detached.readState(manager)
    if (state._tag === "None") {
      return yield* new Sandbox.DockerNotEnabled({ sandbox: found.name })
    }
    const handle = Detached.handle(manager, state.pid, [])
    return yield* Detached.awaitReady(manager, handle, config, policy)
  })

/** The longest compose file read from stdin. */
const MAX_STDIN = 1024 * 1024

/** The CLI's standard input as text (a compose file given as `--file -`). */
const readStdin = Stream.runFold(
  NodeStream.fromReadable<Error, Uint8Array>(
    () => process.stdin,
    (error) => (error instanceof Error ? error : new Error(String(error)))
  ).pipe(Stream.decodeText()),
  "",
  (text, chunk) => text + chunk
).pipe(
  Effect.orElseSucceed(() => ""),
  Effect.filterOrFail(
    (text) => text.length <= MAX_STDIN,
    () =>
      new Shared.InvalidArguments({
        option: "file",
        problem: "the compose file on stdin is over 1 MiB"
      })
  )
)

const write = (stream: NodeJS.WriteStream, text: string) =>
  Effect.sync(() => void stream.write(text))

/** Prints a command's lines as they come: raw, or with `--json` as `line` events. */
const forwardLines = (command: SandboxDocker.DockerCommand, json: boolean) =>
  Stream.runForEach(command.outputLines, (line) =>
    json
      ? write(
          process.stdout,
          JSON.stringify({ event: "line", source: line.source, line: line.line }) + "\n"
        )
      : write(line.source === "stderr" ? process.stderr : process.stdout, line.line + "\n")
  )

/** Prints an answer: a line of text, or with `--json` an event. */
const answer = (json: boolean, event: string, fields: Record<string, unknown>, text: string) =>
  json
    ? write(process.stdout, JSON.stringify({ event, ...fields }) + "\n")
    : write(process.stdout, text + "\n")

/**
 * Runs `sandbox docker`: waits for Docker inside (lazily, `docker info`),
 * logs in when the sandbox's environment says so and the docker CLI inside
 * has no credentials for that registry yet, runs the command through
 * `SandboxDocker`, prints its output.
 *
 * @since 0.1.0
 * @category commands
 */
export const execute = (dockerPlan: SandboxDockerPlan) =>
  Effect.gen(function* () {
    const { found, manager } = yield* attach(dockerPlan.engine, dockerPlan.sandbox)
    const waited = yield* Effect.cached(dockerReady(manager, found, dockerPlan.policy))
    // Every invocation attaches anew: log in only while the docker CLI inside has no credentials.
    const ready = yield* SandboxDocker.readyAfterLogin(manager, waited, found.login, {
      unlessStored: true
    })
    const docker = SandboxDocker.make(manager, ready, { runtime: found.runtime })
    const { flags, json } = dockerPlan
    const [first = "", ...rest] = dockerPlan.args

    if (dockerPlan.verb === "volume") {
      const name = rest[0] ?? ""
      switch (first) {
        case "create": {
          const created = yield* docker.volume.create(name, { labels: flags.labels })
          return yield* answer(json, "volume-created", { name: created }, created)
        }
        case "ls": {
          const volumes = yield* docker.volume.ls()
          if (json) {
            for (const volume of volumes)
              yield* answer(true, "volume", { name: volume.Name, driver: volume.Driver }, "")
            return
          }
          const lines = [
            "DRIVER    VOLUME NAME",
            ...volumes.map((v) => `${v.Driver.padEnd(9)} ${v.Name}`)
          ]
          return yield* write(process.stdout, lines.join("\n") + "\n")
        }
        case "inspect": {
          const info = yield* docker.volume.inspect(name)
          return yield* answer(json, "volume", { ...info }, JSON.stringify(info, null, 2))
        }
        default: {
          yield* docker.volume.rm(name, { force: flags.force })
          return yield* answer(json, "volume-removed", { name }, name)
        }
      }
    }

    const composeOptions = Effect.gen(function* () {
      const file: SandboxCompose.ComposeFile =
        flags.file === "-" ? { text: yield* readStdin } : { path: flags.file ?? "" }
      return {
        file,
        project: flags.project ?? "",
        ...(flags.projectDirectory === undefined
          ? {}
          : { projectDirectory: flags.projectDirectory })
      }
    })

    const composeCommand = (
      options: SandboxCompose.ProjectOptions
    ): Effect.Effect<SandboxDocker.DockerCommand, SandboxCompose.ComposeError, Scope.Scope> => {
      switch (first) {
        case "up":
          return docker.compose.up({ ...options, build: flags.build, services: rest })
        case "down":
          return docker.compose.down({ ...options, volumes: flags.volumes })
        case "ps":
          return docker.compose.ps({ ...options, services: rest })
        case "logs":
          return docker.compose.logs({
            ...options,
            follow: flags.follow,
            services: rest,
            ...(flags.tail === undefined ? {} : { tail: flags.tail })
          })
        default:
          return docker.compose.build({ ...options, noCache: flags.noCache, services: rest })
      }
    }

    const command = yield* ((): Effect.Effect<
      SandboxDocker.DockerCommand,
      SandboxCompose.ComposeError | Shared.InvalidArguments,
      Scope.Scope
    > => {
      switch (dockerPlan.verb) {
        case "pull":
          return docker.pull(first)
        case "run":
          return docker.run(first, rest)
        case "ps":
          return docker.ps()
        case "images":
          return docker.images()
        case "logs":
          return docker.logs(first, {
            follow: flags.follow,
            ...(flags.tail === undefined ? {} : { tail: flags.tail })
          })
        case "rm":
          return docker.rm(first, { force: flags.force })
        case "rmi":
          return docker.rmi(first, { force: flags.force })
        case "build":
          return docker.build({
            tag: flags.tag ?? "",
            context: first,
            buildArgs: flags.buildArgs,
            noCache: flags.noCache,
            ...(flags.file === undefined ? {} : { dockerfile: flags.file })
          })
        case "compose":
          return Effect.flatMap(composeOptions, composeCommand)
      }
    })()
    if (dockerPlan.verb === "pull" || dockerPlan.verb === "build" || dockerPlan.verb === "compose")
      yield* forwardLines(command, json)
    else yield* forward(command.process.output, json)
    yield* command.wait
  }).pipe(Effect.scoped)

/**
 * The `sandbox docker` command, with what to do with its validated plan.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Planned.command(
  "docker",
  config,
  plan,
  "Run a docker command in a sandbox created with --docker: pull IMAGE, run IMAGE [CMD...] (put -- before a CMD with options), ps, images, logs CONTAINER, rm CONTAINER, rmi IMAGE, build --tag IMAGE CONTEXT, compose up|down|ps|logs|build --project NAME --file PATH|- [SERVICE...], volume create|ls|inspect|rm [NAME]. Waits for Docker inside first; logs in first when the sandbox's env has DOCKER_USERNAME and DOCKER_PASSWORD and the docker CLI inside has no credentials for that registry yet. pull, build and compose print their lines as they come (--json: line events). Image references, names and paths are checked, and a value starting with - is refused (exit 2). A docker command that fails exits 7."
)
