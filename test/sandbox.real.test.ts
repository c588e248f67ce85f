/**
 * Sandboxes on a real host engine: the seed's scenario end to end, sandboxes
 * without Docker, argument validation and secrets (gVisor: sandbox.gvisor.real.test.ts).
 * The host engine, images and registry are set up once for the file.
 */
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import { describe, expect, it, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Redacted from "effect/Redacted"
import { pidsMentioning } from "../src/internal/processTree.js"
import * as Sandbox from "../src/Sandbox.js"
import * as Schema from "effect/Schema"
import * as Dockerd from "../src/Dockerd.js"
import * as DockerEngine from "../src/DockerEngine.js"
import {
  type HostEnvironment,
  hostEnvironment,
  SANDBOX_IMAGE,
  seedScenario
} from "../scripts/seedScenario.js"
import { hasDockerd, isolatedConfig } from "./support/isolated.js"
import { BUILD_IMAGES } from "./support/testDaemon.js"
import { withDir } from "./support/withDir.js"

const real = hasDockerd()
const run = promisify(execFile)

class Host extends Context.Tag("test/Host")<Host, HostEnvironment>() {}

const HostLive = Layer.scoped(Host, hostEnvironment()).pipe(Layer.provideMerge(Dockerd.layerNode))

// The first run on a fresh machine builds the Debian image with debootstrap (~3 min).
const TIMEOUT = Duration.toMillis(Duration.minutes(10))

describe.skipIf(!real)("the seed's scenario, end to end", () => {
  it.live(
    "registry, push, Docker-enabled sandbox, pull, run, output, remove: nothing left",
    () =>
      Effect.gen(function* () {
        const lines: Array<string> = []
        const result = yield* Effect.scoped(seedScenario({ log: (line) => lines.push(line) }))
        expect(result.output.trim()).toBe("hello from a container in a sandbox")
        expect(result.containersAfterRemove).toEqual([])
        expect(result.shimsAfterRemove).toEqual([])
        expect(result.phases.map((p) => p.name)).toContain("Docker ready inside the sandbox")
        // The host engine and the registry stopped with the scope.
        expect(yield* pidsMentioning(result.dir)).toEqual([])
      }).pipe(Effect.provide(Dockerd.layerNode)),
    TIMEOUT
  )
})

describe.skipIf(!real)("sandboxes on a host engine", () => {
  layer(HostLive, { timeout: TIMEOUT, excludeTestServices: true })((it) => {
    it.scoped(
      "a sandbox without Docker: exec works, docker commands say Docker is not enabled",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* Sandbox.create(
            {
              image: "sandbox-docker/busybox:latest",
              env: { GREETING: "hi there" },
              memoryMb: 64,
              network: "host"
            },
            { engineSocket: host.socket }
          )
          const said = yield* Effect.scoped(
            Effect.gen(function* () {
              const handle = yield* sandbox.exec(["sh", "-c", 'echo "$GREETING"'])
              yield* handle.awaitExit
              return yield* handle.logTail
            })
          )
          expect(said).toEqual(["hi there"])
          const error = yield* Effect.flip(Effect.scoped(sandbox.docker.ps()))
          expect(error).toMatchObject({ _tag: "DockerNotEnabled", sandbox: sandbox.name })
          yield* sandbox.remove
        }),
      TIMEOUT
    )

    it.scoped("arguments are validated before anything runs", () =>
      Effect.gen(function* () {
        const host = yield* Host
        const sandbox = yield* Sandbox.create(
          { image: "sandbox-docker/busybox:latest", network: "host" },
          { engineSocket: host.socket }
        )
        const refused = [
          sandbox.docker.pull("--all-tags"),
          sandbox.docker.pull("UPPER/case"),
          sandbox.docker.run("busybox", [], { name: "--privileged" }),
          sandbox.docker.run("busybox", [], { volumes: ["-v"] }),
          sandbox.docker.rm("-f"),
          sandbox.docker.logs("c", { tail: -1 }),
          sandbox.docker.tag("ok", "--bad"),
          sandbox.docker.exec("c", [])
        ]
        for (const command of refused) {
          const error = yield* Effect.flip(Effect.scoped(command))
          expect(error._tag).toBe("InvalidDockerArgument")
        }
        yield* sandbox.remove
      })
    )

    it.scoped("an image that is not there: SandboxCreateFailed with what to do", () =>
      Effect.gen(function* () {
        const host = yield* Host
        const result = yield* Effect.either(
          Sandbox.create({ image: "sandbox-docker/nope:1" }, { engineSocket: host.socket })
        )
        const error = Either.flip(result).pipe(Either.getOrThrow)
        expect(error).toMatchObject({
          _tag: "SandboxCreateFailed",
          image: "sandbox-docker/nope:1",
          reason: expect.any(String),
          hint: expect.stringContaining("build-images.sh")
        })
      })
    )

    it.scoped(
      "login: succeeds with the password through stdin; the password is in no argv, output, error or log line",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const secret = "s3cret-Pa55word"
          const logs: Array<string> = []
          const output = yield* Effect.gen(function* () {
            const sandbox = yield* Sandbox.create(
              { image: SANDBOX_IMAGE, dockerEnabled: true, network: "host" },
              { engineSocket: host.socket, stopGrace: "3 seconds" }
            )
            const login = yield* sandbox.docker.login({
              username: "demo",
              password: Redacted.make(secret),
              registry: "127.0.0.1:5000"
            })
            expect(login.argv).toContain("--password-stdin")
            expect(login.argv.join(" ")).not.toContain(secret)
            // The registry has no auth: any password is accepted, so the login
            // must succeed (`output` fails unless it exits 0).
            const output = yield* login.output
            yield* sandbox.remove
            return output
          }).pipe(
            Effect.provide(
              Logger.replace(
                Logger.defaultLogger,
                Logger.make(({ message, annotations }) => {
                  logs.push(JSON.stringify({ message, annotations: [...annotations] }))
                })
              )
            ),
            Logger.withMinimumLogLevel(LogLevel.All)
          )
          expect(output.exitCode).toBe(0)
          expect(`${output.stdout}${output.stderr}`).toContain("Login Succeeded")
          expect(logs.length).toBeGreaterThan(0)
          expect([JSON.stringify(output), ...logs].join("\n")).not.toContain(secret)
        }),
      TIMEOUT
    )
  })
})

describe.skipIf(!real)("a sandbox on the engine's host network, with Docker inside", () => {
  it.live(
    "is refused on an engine with a docker0 bridge, which the inner dockerd would delete; nothing is created",
    () =>
      withDir((dir) =>
        Effect.gen(function* () {
          // An engine with its default bridge, in a network namespace of its own.
          const config = isolatedConfig(dir, { extraArgs: ["--ip6tables=false"] })
          yield* Dockerd.start(config)
          const engine = yield* DockerEngine.make(config.socket as string)
          const bridge = yield* engine.request("GET", "/networks/bridge", {
            schema: Schema.Struct({ Name: Schema.String })
          })
          expect(bridge.Name).toBe("bridge")
          const error = yield* Effect.flip(
            Sandbox.create(
              { image: SANDBOX_IMAGE, dockerEnabled: true, network: "host" },
              { engineSocket: config.socket as string }
            )
          )
          expect(error).toMatchObject({ _tag: "SandboxCreateFailed" })
          expect(error.message).toContain("would delete the engine's docker0 bridge")
          expect(error.message).toContain("Use network bridge (the default) or none")
          const containers = yield* engine.request("GET", "/containers/json?all=true", {
            schema: Schema.Array(Schema.Unknown)
          })
          expect(containers).toEqual([])
        })
      ),
    60_000
  )

  it.live(
    "on the default network (bridge) Docker inside starts and serves, and the engine keeps its docker0",
    () =>
      withDir((dir) =>
        Effect.gen(function* () {
          const config = isolatedConfig(dir, { extraArgs: ["--ip6tables=false"] })
          const host = yield* Dockerd.start(config)
          const socket = config.socket as string
          // The engine's network namespace (`unshare --net` execs dockerd: the same pid).
          const hasDocker0 = Effect.promise(() =>
            run("nsenter", [`--net=/proc/${host.pid}/ns/net`, "ip", "-o", "link", "show"]).then(
              (out) => / docker0: /.test(out.stdout)
            )
          )
          expect(yield* hasDocker0).toBe(true)
          yield* Effect.promise(() =>
            run("bash", [BUILD_IMAGES, "all"], {
              env: { ...process.env, DOCKER_HOST: `unix://${socket}` },
              maxBuffer: 1 << 24
            })
          )
          yield* Effect.scoped(
            Effect.gen(function* () {
              const sandbox = yield* Sandbox.create(
                { image: SANDBOX_IMAGE, dockerEnabled: true },
                { engineSocket: socket, stopGrace: "3 seconds" }
              )
              const daemon = yield* sandbox.daemon
              expect(daemon.serverVersion).toMatch(/^\d+\.\d+/)
              const images = yield* Effect.scoped(
                Effect.flatMap(sandbox.docker.images({ quiet: true }), (handle) => handle.output)
              )
              expect(images.exitCode).toBe(0)
              expect(yield* hasDocker0).toBe(true)
              yield* sandbox.remove
            })
          )
          const engine = yield* DockerEngine.make(socket)
          const containers = yield* engine.request("GET", "/containers/json?all=true", {
            schema: Schema.Array(Schema.Unknown)
          })
          expect(containers).toEqual([])
        })
      ),
    TIMEOUT
  )
})
