/**
 * Docker inside a runc sandbox reached over a directory of this machine
 * (`dockerVia: "host-socket"`, the default): readiness and liveness over the
 * bind-mounted socket with no process started inside, pulls over the inner
 * Engine API, registry mirrors, and the spec's validation of them. The host
 * engine, images and registry are set up once for the file.
 */
import { existsSync } from "node:fs"
import { describe, expect, it, layer } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Dockerd from "../src/Dockerd.js"
import * as DockerEngine from "../src/DockerEngine.js"
import * as Probe from "../src/Probe.js"
import * as Sandbox from "../src/Sandbox.js"
import { type HostEnvironment, hostEnvironment, SANDBOX_IMAGE } from "../scripts/seedScenario.js"
import { hasDockerd } from "./support/isolated.js"

const real = hasDockerd()

class Host extends Context.Tag("test/FastHost")<Host, HostEnvironment>() {}

const HostLive = Layer.scoped(Host, hostEnvironment()).pipe(Layer.provideMerge(Dockerd.layerNode))

/** A Docker-enabled sandbox on the file's host engine, on its network (where the registry listens). */
const dockerSandbox = Effect.flatMap(Host, (host) =>
  Sandbox.create(
    { image: SANDBOX_IMAGE, dockerEnabled: true, network: "host" },
    { engineSocket: host.socket, stopGrace: "3 seconds" }
  )
)

// The first run on a fresh machine builds the Debian image with debootstrap (~3 min).
const TIMEOUT = Duration.toMillis(Duration.minutes(10))

/** What is read of an Engine event. */
const EngineEvent = Schema.Struct({ Action: Schema.String })

/** How many execs the host engine created in a container since `since` (unix seconds; its events). */
const execsSince = (engine: DockerEngine.DockerEngineClient, container: string, since: number) =>
  Effect.gen(function* () {
    const until = Math.ceil(Date.now() / 1000) + 1
    const filters = encodeURIComponent(JSON.stringify({ container: [container] }))
    const lines = yield* Stream.runCollect(
      engine.lines("GET", `/events?since=${since}&until=${until}&filters=${filters}`)
    )
    return Chunk.toReadonlyArray(lines)
      .map((line) => Schema.decodeUnknownSync(EngineEvent)(JSON.parse(line)))
      .filter((event) => event.Action.startsWith("exec_create")).length
  })

/** Runs `argv` in the sandbox; its output lines once it has ended. */
const execLines = (sandbox: Sandbox.Sandbox, argv: readonly [string, ...Array<string>]) =>
  Effect.scoped(
    Effect.gen(function* () {
      const handle = yield* sandbox.exec(argv)
      yield* handle.awaitExit
      return yield* handle.logTail
    })
  )

const RegistryConfig = Schema.Struct({
  RegistryConfig: Schema.Struct({
    Mirrors: Schema.NullOr(Schema.Array(Schema.String)),
    InsecureRegistryCIDRs: Schema.NullOr(Schema.Array(Schema.String)),
    IndexConfigs: Schema.Record({ key: Schema.String, value: Schema.Unknown })
  })
})

describe("a sandbox spec's registry mirrors and insecure registries", () => {
  it.scoped.each([
    [{ registryMirrors: ["ftp://10.0.0.2:5000"] }, "is not a registry mirror"],
    [{ registryMirrors: ["http://10.0.0.2:5000/v2/"] }, "with no path, user or query"],
    [{ registryMirrors: ["--registry-mirror=http://x"] }, "is not a registry mirror"],
    [{ insecureRegistries: ["http://10.0.0.2:5000"] }, "without http://"],
    [{ insecureRegistries: ["10.0.0.0/8 --debug"] }, "is not an insecure registry"]
  ] as const)("%j is InvalidConfig before anything is created: %s", ([fields, says]) =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        Sandbox.create(
          { image: SANDBOX_IMAGE, dockerEnabled: true, ...fields },
          // Nothing listens here: the spec is refused before the engine is asked.
          { engineSocket: "/nonexistent/engine.sock" }
        )
      )
      expect(error._tag).toBe("InvalidConfig")
      expect(error).toMatchObject({ field: "sandbox" })
      expect(error.message).toContain(says)
    })
  )

  it.scoped(
    "no directory for Docker's socket (TMPDIR not there): SandboxCreateFailed saying so, before the engine is asked",
    () =>
      Effect.gen(function* () {
        const saved = process.env.TMPDIR
        process.env.TMPDIR = "/nonexistent/sandbox-docker-tmp"
        const error = yield* Effect.flip(
          Sandbox.create(
            { image: SANDBOX_IMAGE, dockerEnabled: true },
            { engineSocket: "/nonexistent/engine.sock" }
          )
        ).pipe(
          Effect.ensuring(
            Effect.sync(() =>
              saved === undefined ? delete process.env.TMPDIR : (process.env.TMPDIR = saved)
            )
          )
        )
        expect(error._tag).toBe("SandboxCreateFailed")
        expect(error.message).toContain("cannot make a directory for Docker's socket")
        expect(error.message).toContain("TMPDIR")
      })
  )

  it.effect("valid ones become the inner dockerd's flags, in order", () =>
    Effect.gen(function* () {
      const spec = yield* Sandbox.decodeSpec({
        image: SANDBOX_IMAGE,
        registryMirrors: ["http://10.0.0.2:5000", "https://[fd00::1]:443/"],
        insecureRegistries: ["10.0.0.2:5000", "10.0.0.0/8", "registry.internal"]
      })
      const config = Sandbox.innerDockerd(spec, Duration.seconds(1))
      expect(config.extraArgs?.slice(-5)).toEqual([
        "--registry-mirror=http://10.0.0.2:5000",
        "--registry-mirror=https://[fd00::1]:443/",
        "--insecure-registry=10.0.0.2:5000",
        "--insecure-registry=10.0.0.0/8",
        "--insecure-registry=registry.internal"
      ])
    })
  )
})

describe.skipIf(!real)("Docker inside a runc sandbox, reached over its host socket", () => {
  layer(HostLive, { timeout: TIMEOUT, excludeTestServices: true })((it) => {
    it.scoped(
      "ready by socket, /_ping and containerd probed from this machine (no `docker info` exec); the directory goes with the sandbox",
      () =>
        Effect.gen(function* () {
          const sandbox = yield* dockerSandbox
          const socket = sandbox.dockerSocket
          expect(socket).toMatch(/\/docker\.sock$/)
          const daemon = yield* sandbox.daemon
          expect(Probe.names(daemon.liveness)).toEqual(["ping", "containerd"])
          expect(daemon.report.results.map((result) => result.probe)).toEqual([
            "socket",
            "ping",
            "containerd"
          ])
          // containerd answered on its own socket, in the shared exec-root.
          expect(daemon.report.resultOf("containerd")).toHaveProperty("version")
          expect(daemon.serverVersion).toMatch(/^\d+\.\d+/)
          // From this machine, over the shared socket.
          const engine = yield* DockerEngine.make(socket ?? "")
          const info = yield* engine.info
          expect(info.ServerVersion).toBe(daemon.serverVersion)
          // Inside, `docker` finds the same daemon through DOCKER_HOST.
          const version = yield* Effect.scoped(
            Effect.gen(function* () {
              const handle = yield* sandbox.exec([
                "docker",
                "version",
                "--format",
                "{{.Server.Version}}"
              ])
              yield* handle.awaitExit
              return yield* handle.logTail
            })
          )
          expect(version).toEqual([daemon.serverVersion])
          yield* sandbox.remove
          expect(existsSync(socket ?? "/")).toBe(false)
        }),
      TIMEOUT
    )

    it.scoped(
      "dockerd starts with the container: no exec runs in the sandbox until Docker is ready (the engine's events list none; an exec after it is listed)",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const engine = yield* DockerEngine.make(host.socket)
          const since = Math.floor(Date.now() / 1000) - 1
          const sandbox = yield* dockerSandbox
          const daemon = yield* sandbox.daemon
          const execsUntilNow = execsSince(engine, sandbox.id, since)
          expect(yield* execsUntilNow).toBe(0)
          // The process is the entrypoint's: its pid is the one it wrote.
          const pid = yield* execLines(sandbox, ["cat", "/run/sandbox-docker-shared/dockerd.pid"])
          expect(pid).toEqual([String(daemon.pid)])
          // The same look sees an exec once one has run.
          expect(yield* execsUntilNow).toBeGreaterThan(0)
          yield* sandbox.remove
        }),
      TIMEOUT
    )

    it.scoped(
      "the entrypoint's dockerd killed after ready: sandbox.daemon and docker commands fail with DaemonDied (SIGKILL), its last log lines in the error",
      () =>
        Effect.gen(function* () {
          const sandbox = yield* dockerSandbox
          const daemon = yield* sandbox.daemon
          yield* execLines(sandbox, ["sh", "-c", `kill -KILL ${daemon.pid}`])
          const error = yield* Effect.flip(sandbox.daemon).pipe(
            Effect.retry({ schedule: Schedule.spaced("200 millis") }),
            Effect.timeout("60 seconds")
          )
          expect(error).toMatchObject({ _tag: "DaemonDied", pid: daemon.pid, signal: "SIGKILL" })
          // dockerd's output, read from its log in the shared directory.
          expect(error._tag === "DaemonDied" && error.logTail.join("\n")).toContain(
            "API listen on /run/sandbox-docker-shared/docker.sock"
          )
          const ps = yield* Effect.flip(Effect.scoped(sandbox.docker.ps()))
          expect(ps._tag).toBe("DaemonDied")
          yield* sandbox.remove
        }),
      TIMEOUT
    )

    it.scoped(
      "pull goes over the inner Engine API: per-layer progress events, the image is there, a missing one is DockerCommandFailed",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* dockerSandbox
          const pull = yield* sandbox.docker.pull(host.image)
          const events = Chunk.toReadonlyArray(yield* Stream.runCollect(pull.progress))
          yield* pull.wait
          expect(pull.argv).toEqual(["docker", "pull", host.image])
          // One layer: its id and a "Pull complete", then the digest line.
          const layers = events.filter((event) => event.id !== undefined && event.id.length === 12)
          expect(layers.some((event) => event.status === "Pull complete")).toBe(true)
          expect(events.some((event) => event.status.startsWith("Digest: sha256:"))).toBe(true)
          const output = yield* pull.output
          expect(output.stdout).toContain("Pull complete")
          const engine = yield* DockerEngine.make(sandbox.dockerSocket ?? "")
          yield* engine.request("GET", `/images/${encodeURIComponent(host.image)}/json`)

          const missing = yield* sandbox.docker.pull("127.0.0.1:5000/demo/nothing-here:1")
          const error = yield* Effect.flip(missing.wait)
          expect(error._tag).toBe("DockerCommandFailed")
          expect(error.exitCode).toBe(1)
          expect(error.stderrTail.join("\n")).toMatch(/not found|manifest unknown/i)
          yield* sandbox.remove
        }),
      TIMEOUT
    )

    it.scoped(
      "run goes over the inner Engine API: an image not there is pulled first, stdout and stderr apart, the exit code, --rm leaves nothing, no exec in the sandbox",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const hostEngine = yield* DockerEngine.make(host.socket)
          const sandbox = yield* dockerSandbox
          yield* sandbox.daemon
          const inner = yield* DockerEngine.make(sandbox.dockerSocket ?? "")
          const since = Math.floor(Date.now() / 1000)
          const run = yield* sandbox.docker.run(
            host.image,
            ["sh", "-c", "echo to stdout; echo to stderr >&2; exit 3"],
            { remove: true, env: { GREETING: "hi" } }
          )
          expect(run.process.pid).toBe(0)
          expect(run.argv.slice(0, 2)).toEqual(["docker", "run"])
          const lines = Chunk.toReadonlyArray(yield* Stream.runCollect(run.outputLines))
          expect(yield* run.exitCode).toBe(3)
          expect(lines).toContainEqual({
            source: "stderr",
            line: `Unable to find image '${host.image}' locally`
          })
          expect(lines).toContainEqual({ source: "stdout", line: "to stdout" })
          expect(lines).toContainEqual({ source: "stderr", line: "to stderr" })
          const error = yield* Effect.flip(run.wait)
          expect(error).toMatchObject({ _tag: "DockerCommandFailed", exitCode: 3 })
          expect(error.stderrTail).toContain("to stderr")
          const left = yield* inner.request("GET", "/containers/json?all=true", {
            schema: Schema.Array(Schema.Unknown)
          })
          expect(left).toEqual([])
          expect(yield* execsSince(hostEngine, sandbox.id, since)).toBe(0)
          // The env reached the container.
          const env = yield* sandbox.docker.run(host.image, ["sh", "-c", "echo $GREETING"], {
            remove: true,
            env: { GREETING: "hi there" }
          })
          expect((yield* env.output).stdout).toBe("hi there\n")
          yield* sandbox.remove
        }),
      TIMEOUT
    )

    it.scoped(
      "run over the API fails as the docker CLI does: the same exit codes for a missing command (127), a refused option (125) and a missing image (125)",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* dockerSandbox
          yield* sandbox.daemon
          yield* Effect.flatMap(sandbox.docker.pull(host.image), (pull) => pull.wait)
          const cases = [
            {
              command: ["no-such-command"],
              volumes: [],
              image: host.image,
              said: "executable file not found"
            },
            {
              command: ["true"],
              volumes: ["/x:relative-target"],
              image: host.image,
              said: "invalid"
            },
            {
              command: ["true"],
              volumes: [],
              image: "127.0.0.1:5000/demo/nothing-here:1",
              said: "not found"
            }
          ]
          for (const { command, image, said, volumes } of cases) {
            const run = yield* sandbox.docker.run(image, command, { remove: true, volumes })
            const error = yield* Effect.flip(run.wait)
            // The docker CLI inside, given the same run.
            const cli = yield* execLines(sandbox, [
              "sh",
              "-c",
              'docker "$@" 2>&1; echo "exit $?"',
              "sh",
              ...run.argv.slice(1)
            ])
            expect(error.exitCode).toBe(Number(cli.at(-1)?.replace("exit ", "")))
            expect(error.stderrTail.join("\n").toLowerCase()).toContain(said.toLowerCase())
          }
          yield* sandbox.remove
        }),
      TIMEOUT
    )

    it.scoped(
      "run over the API: detached, the container id at once and the container running on; attached, closing the scope stops its container and --rm removes it",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* dockerSandbox
          yield* sandbox.daemon
          const inner = yield* DockerEngine.make(sandbox.dockerSocket ?? "")
          const detached = yield* Effect.scoped(
            Effect.flatMap(
              sandbox.docker.run(host.image, ["sleep", "300"], { detach: true, name: "bg" }),
              (run) => run.output
            )
          )
          const state = yield* inner.request("GET", "/containers/bg/json", {
            schema: Schema.Struct({
              Id: Schema.String,
              State: Schema.Struct({ Running: Schema.Boolean })
            })
          })
          expect(detached.stdout.trim()).toBe(state.Id)
          expect(state.State.Running).toBe(true)
          yield* Effect.scoped(
            Effect.gen(function* () {
              const run = yield* sandbox.docker.run(host.image, ["sleep", "300"], {
                name: "fg",
                remove: true
              })
              // Running: its container is there.
              yield* inner
                .request("GET", "/containers/fg/json", {
                  schema: Schema.Struct({ State: Schema.Struct({ Running: Schema.Literal(true) }) })
                })
                .pipe(Effect.retry({ schedule: Schedule.spaced("100 millis"), times: 100 }))
              return run
            })
          )
          const gone = yield* Effect.flip(inner.request("GET", "/containers/fg/json"))
          expect(gone).toMatchObject({ _tag: "EngineBadAnswer", status: 404 })
          yield* sandbox.remove
        }),
      TIMEOUT
    )

    it.scoped(
      "registryMirrors: the inner dockerd lists the mirror and pulls a short name through it (the local registry)",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* Sandbox.create(
            {
              image: SANDBOX_IMAGE,
              dockerEnabled: true,
              network: "host",
              registryMirrors: ["http://127.0.0.1:5000"],
              insecureRegistries: ["127.0.0.1:5000"]
            },
            { engineSocket: host.socket, stopGrace: "3 seconds" }
          )
          yield* sandbox.daemon
          const engine = yield* DockerEngine.make(sandbox.dockerSocket ?? "")
          const info = yield* engine.request("GET", "/info", { schema: RegistryConfig })
          expect(info.RegistryConfig.Mirrors).toEqual(["http://127.0.0.1:5000/"])
          expect(Object.keys(info.RegistryConfig.IndexConfigs)).toContain("127.0.0.1:5000")
          // `demo/busybox:1` names the default registry: only the mirror has it
          // (this machine reaches no public registry from the engine's namespace).
          const pull = yield* sandbox.docker.pull("demo/busybox:1")
          yield* pull.wait
          const run = yield* sandbox.docker.run(
            "demo/busybox:1",
            ["/bin/busybox", "echo", "via the mirror"],
            {
              remove: true
            }
          )
          const output = yield* run.output
          expect(output.stdout.trim()).toBe("via the mirror")
          yield* sandbox.remove
        }),
      TIMEOUT
    )
  })
})
