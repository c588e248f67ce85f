/**
 * Docker inside gVisor: sandboxes on a real host engine with runsc
 * registered (scripts/seedScenario.ts `hostEnvironment`), a real dockerd
 * inside, a real local registry. One Docker-enabled runsc sandbox is shared
 * by the tests that only use its Docker; tests that break Docker inside get
 * their own.
 */
import { execFile, execFileSync } from "node:child_process"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { promisify } from "node:util"
import { describe, expect, it, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Dockerd from "../src/Dockerd.js"
import * as DockerEngine from "../src/DockerEngine.js"
import { pidsMentioning } from "../src/internal/processTree.js"
import * as Gvisor from "../src/Gvisor.js"
import * as Sandbox from "../src/Sandbox.js"
import type * as SandboxDocker from "../src/SandboxDocker.js"
import { type HostEnvironment, hostEnvironment, SANDBOX_IMAGE } from "../scripts/seedScenario.js"
import { isolatedConfig } from "./support/isolated.js"
import { withDir } from "./support/withDir.js"

const run = promisify(execFile)

const hasRunsc = (): boolean => {
  try {
    execFileSync("sh", ["-c", "command -v dockerd && command -v runsc"], { stdio: "ignore" })
    return true
  } catch {
    if (process.env.CI === "true") throw new Error("CI=true but dockerd or runsc is not installed")
    return false
  }
}

class Host extends Context.Tag("test/Host")<Host, HostEnvironment>() {}

const HostLive = Layer.scoped(Host, hostEnvironment()).pipe(Layer.provideMerge(Dockerd.layerNode))

/** A Docker-enabled sandbox on runsc, removed when the test's scope closes. */
const gvisorSandbox = Effect.flatMap(Host, (host) =>
  Sandbox.create(
    { image: SANDBOX_IMAGE, runtime: "runsc", dockerEnabled: true, network: "host" },
    { engineSocket: host.socket, stopGrace: "5 seconds" }
  )
)

// The first run on a fresh machine builds the Debian image with debootstrap (~3 min).
const TIMEOUT = Duration.toMillis(Duration.minutes(10))

const ContainerInspect = Schema.Struct({
  HostConfig: Schema.Struct({ Runtime: Schema.String })
})

/** Runs a command in the sandbox and gives its output lines. */
const execLines = (sandbox: Sandbox.Sandbox, argv: readonly [string, ...Array<string>]) =>
  Effect.scoped(
    Effect.gen(function* () {
      const handle = yield* sandbox.exec(argv, { tailLines: 200 })
      yield* handle.awaitExit
      return yield* handle.logTail
    })
  )

/** Writes `text` to `path` inside the sandbox, through exec's stdin (docker cp is not seen there). */
const writeInside = (sandbox: Sandbox.Sandbox, path: string, text: string) =>
  Effect.scoped(
    Effect.gen(function* () {
      const handle = yield* sandbox.exec(
        ["sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1"', "sh", path],
        {
          stdin: text
        }
      )
      const status = yield* handle.awaitExit
      expect(status).toMatchObject({ _tag: "Exited", code: 0 })
    })
  )

/** A docker command's stdout, once it exited 0. */
const stdoutOf = <E, R>(command: Effect.Effect<SandboxDocker.DockerCommand, E, R>) =>
  Effect.flatMap(command, (handle) => Effect.map(handle.output, (output) => output.stdout))

describe.skipIf(!hasRunsc())("Docker inside gVisor (runsc)", () => {
  layer(HostLive, { timeout: TIMEOUT, excludeTestServices: true })((it) => {
    it.scoped(
      "create, ready, pull, run: on runsc (gVisor's kernel answers inside) Docker is ready on vfs, pulls from the local registry and runs a container",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* gvisorSandbox
          const engine = yield* DockerEngine.make(host.socket)
          const inspect = yield* engine.request("GET", `/containers/${sandbox.id}/json`, {
            schema: ContainerInspect
          })
          expect(inspect.HostConfig.Runtime).toBe("runsc")
          // gVisor's own kernel log, which runc's host kernel never prints.
          expect((yield* execLines(sandbox, ["dmesg"])).join("\n")).toContain("gVisor")
          const daemon = yield* sandbox.daemon
          expect(daemon.serverVersion).toMatch(/^\d+\.\d+/)
          expect(daemon.storageDriver).toBe("vfs")
          expect(daemon.config.profile).toBe("gvisor")
          yield* Effect.flatMap(sandbox.docker.pull(host.image), (pull) => pull.wait)
          const output = yield* Effect.flatMap(
            sandbox.docker.run(host.image, ["/bin/busybox", "echo", "hello from gVisor"], {
              remove: true
            }),
            (container) => container.output
          )
          expect(output.stdout.trim()).toBe("hello from gVisor")
        }),
      TIMEOUT
    )

    it.scoped(
      "build, logs, rm: a one-line Dockerfile FROM the pulled base builds, its container's logs come back, rm removes it",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* gvisorSandbox
          yield* Effect.flatMap(sandbox.docker.pull(host.image), (pull) => pull.wait)
          yield* writeInside(sandbox, "/ctx/Dockerfile", `FROM ${host.image}\n`)
          const tag = "127.0.0.1:5000/demo/built:1"
          yield* Effect.flatMap(sandbox.docker.build({ tag, context: "/ctx" }), (b) => b.wait)
          const images = yield* stdoutOf(sandbox.docker.images())
          expect(images).toContain("127.0.0.1:5000/demo/built")
          yield* Effect.flatMap(
            sandbox.docker.run(tag, ["/bin/busybox", "echo", "logged under gVisor"], {
              name: "logged",
              detach: true
            }),
            (started) => started.wait
          )
          // A detached container's output reaches `docker logs` once it has run.
          const logs = yield* Effect.scoped(stdoutOf(sandbox.docker.logs("logged"))).pipe(
            Effect.filterOrFail((text) => text.includes("logged under gVisor")),
            Effect.retry({ schedule: Schedule.spaced("200 millis") }),
            Effect.timeout("60 seconds")
          )
          expect(logs.trim()).toBe("logged under gVisor")
          yield* Effect.flatMap(sandbox.docker.rm("logged", { force: true }), (rm) => rm.wait)
          const all = yield* stdoutOf(sandbox.docker.ps({ all: true }))
          expect(all).not.toContain("logged")
        }),
      TIMEOUT
    )

    it.scoped(
      "an inner container asking for a network namespace of its own: NestedNetworkUnsupported before anything runs; runsc would fail it with 'protocol not supported'",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* gvisorSandbox
          for (const network of ["none", "bridge"]) {
            const error = yield* Effect.flip(
              Effect.scoped(sandbox.docker.run(host.image, ["true"], { network }))
            )
            expect(error).toMatchObject({ _tag: "NestedNetworkUnsupported", network })
            expect(error.message).toContain("protocol not supported")
          }
          // What the library refuses is what runsc does: the same run, by hand.
          yield* sandbox.daemon
          yield* Effect.flatMap(sandbox.docker.pull(host.image), (pull) => pull.wait)
          const byHand = yield* execLines(sandbox, [
            "sh",
            "-c",
            `docker run --rm --network none ${host.image} true 2>&1; echo "exit $?"`
          ])
          expect(byHand.join("\n")).toContain("protocol not supported")
          expect(byHand.at(-1)).not.toBe("exit 0")
        }),
      TIMEOUT
    )

    it.scoped(
      "the inner dockerd killed after ready: sandbox.daemon and docker commands fail with DaemonDied (exit 137: SIGKILL from outside the process manager)",
      () =>
        Effect.gen(function* () {
          const sandbox = yield* gvisorSandbox
          const daemon = yield* sandbox.daemon
          yield* execLines(sandbox, ["sh", "-c", "kill -KILL $(cat /var/run/docker.pid)"])
          // The supervisor sees the exit and settles the sandbox's Docker state.
          const error = yield* Effect.flip(sandbox.daemon).pipe(
            Effect.retry({ schedule: Schedule.spaced("200 millis") }),
            Effect.timeout("60 seconds")
          )
          expect(error).toMatchObject({ _tag: "DaemonDied", pid: daemon.pid, exitCode: 137 })
          const ps = yield* Effect.flip(Effect.scoped(sandbox.docker.ps()))
          expect(ps._tag).toBe("DaemonDied")
        }),
      TIMEOUT
    )

    it.scoped(
      "the inner dockerd crashing at start under runsc (a bad daemon.json in the image): DaemonCrashed, diagnosis bad-config",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const image = "sandbox-docker/debian-docker:bad-config"
          // An image whose /etc/docker/daemon.json is not JSON, built on the host engine.
          const context = yield* Effect.acquireRelease(
            Effect.promise(() => mkdtemp("/tmp/sdg-")),
            (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
          )
          yield* Effect.promise(async () => {
            await writeFile(`${context}/daemon.json`, "{ not json\n")
            await writeFile(
              `${context}/Dockerfile`,
              `FROM ${SANDBOX_IMAGE}\nCOPY daemon.json /etc/docker/daemon.json\n`
            )
            await run("docker", ["build", "--quiet", "--tag", image, context], { env: host.env })
          })
          const sandbox = yield* Sandbox.create(
            { image, runtime: "runsc", dockerEnabled: true, network: "host" },
            { engineSocket: host.socket, stopGrace: "5 seconds" }
          )
          const error = yield* Effect.flip(sandbox.daemon)
          expect(error).toMatchObject({
            _tag: "DaemonCrashed",
            exitCode: 1,
            diagnosis: { cause: "bad-config" }
          })
          expect(error.message).toContain("daemon.json")
        }),
      TIMEOUT
    )

    it.scoped(
      "remove: the sandbox's container and every process of it (runsc sandbox, gofer, shim, dockerd) are gone",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* gvisorSandbox
          yield* sandbox.daemon
          expect(yield* pidsMentioning(sandbox.id)).not.toEqual([])
          yield* sandbox.remove
          expect(yield* pidsMentioning(sandbox.id)).toEqual([])
          const engine = yield* DockerEngine.make(host.socket)
          const left = yield* engine.request("GET", "/containers/json?all=true", {
            schema: Schema.Array(Schema.Struct({ Id: Schema.String }))
          })
          expect(left.map((c) => c.Id)).not.toContain(sandbox.id)
        }),
      TIMEOUT
    )
  })
})

describe.skipIf(!hasRunsc())(
  "the host engine's runsc, checked before a gVisor sandbox is created",
  () => {
    /** An engine of its own with `runtimes` in its daemon.json, and what creating a gVisor sandbox on it gives. */
    const createOn = (runtimes: (dir: string) => unknown) =>
      withDir((dir) =>
        Effect.gen(function* () {
          yield* Effect.promise(() =>
            writeFile(`${dir}/daemon.json`, JSON.stringify({ runtimes: runtimes(dir) }))
          )
          yield* Effect.promise(() =>
            writeFile(`${dir}/old-runsc`, "#!/bin/sh\necho 'runsc version 0.0~20221219.0'\n", {
              mode: 0o755
            })
          )
          const config = isolatedConfig(dir, {
            extraArgs: ["--bridge=none", "--ip6tables=false", `--config-file=${dir}/daemon.json`]
          })
          yield* Dockerd.start(config)
          const socket = config.socket as string
          const error = yield* Effect.flip(
            Sandbox.create(
              { image: SANDBOX_IMAGE, runtime: "runsc", dockerEnabled: true, network: "host" },
              { engineSocket: socket }
            )
          )
          const engine = yield* DockerEngine.make(socket)
          const containers = yield* engine.request("GET", "/containers/json?all=true", {
            schema: Schema.Array(Schema.Unknown)
          })
          return { error, containers, dir }
        })
      )

    it.live(
      "runsc not registered, without --network=host, without --net-raw, or too old: RunscUnsuitable naming the fix; nothing created",
      () =>
        Effect.gen(function* () {
          const runsc = (path: string, runtimeArgs: ReadonlyArray<string>) => ({
            runsc: { path, runtimeArgs }
          })
          const cases: ReadonlyArray<{
            readonly runtimes: (dir: string) => unknown
            readonly problem: Gvisor.Problem
          }> = [
            { runtimes: () => ({}), problem: "not-registered" },
            { runtimes: () => runsc("runsc", ["--net-raw"]), problem: "network-not-host" },
            { runtimes: () => runsc("runsc", ["--network=host"]), problem: "no-net-raw" },
            // A stand-in printing Debian 12's runsc version line (the engine only registers it).
            {
              runtimes: (dir) => runsc(`${dir}/old-runsc`, Gvisor.RUNTIME_ARGS),
              problem: "too-old"
            }
          ]
          for (const { problem, runtimes } of cases) {
            const { containers, error } = yield* createOn(runtimes)
            expect(error).toMatchObject({ _tag: "RunscUnsuitable", problem })
            expect(error.message).toContain(
              problem === "too-old" ? "bookworm-backports" : "daemon.json"
            )
            expect(containers).toEqual([])
          }
        }),
      TIMEOUT
    )
  }
)
