/**
 * Docker inside gVisor: sandboxes on a real host engine with runsc
 * registered (scripts/seedScenario.ts `hostEnvironment`), a real dockerd
 * inside, a real local registry. One Docker-enabled runsc sandbox is shared
 * by the tests that only use its Docker; tests that break Docker inside get
 * their own.
 */
import { execFile } from "node:child_process"
import { existsSync, lstatSync } from "node:fs"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import * as Path from "node:path"
import { promisify } from "node:util"
import { describe, expect, it, layer } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Containerd from "../src/Containerd.js"
import * as Dockerd from "../src/Dockerd.js"
import * as DockerEngine from "../src/DockerEngine.js"
import { pidsMentioning } from "../src/internal/processTree.js"
import * as Gvisor from "../src/Gvisor.js"
import * as Sandbox from "../src/Sandbox.js"
import type * as SandboxDocker from "../src/SandboxDocker.js"
import { type HostEnvironment, hostEnvironment, SANDBOX_IMAGE } from "../scripts/seedScenario.js"
import { hasRunsc, isolatedConfig } from "./support/isolated.js"
import { withDir } from "./support/withDir.js"

const run = promisify(execFile)
const BUILD_IMAGES = new URL("../scripts/build-images.sh", import.meta.url).pathname

class Host extends Context.Tag("test/Host")<Host, HostEnvironment>() {}

const HostLive = Layer.scoped(Host, hostEnvironment()).pipe(Layer.provideMerge(Dockerd.layerNode))

/**
 * A Docker-enabled sandbox on runsc, removed when the test's scope closes;
 * the engine registers runsc with `--host-uds=create`, so by default it is
 * reached over a host socket.
 */
const gvisorSandboxVia = (dockerVia?: Sandbox.CreateOptions["dockerVia"]) =>
  Effect.flatMap(Host, (host) =>
    Sandbox.create(
      { image: SANDBOX_IMAGE, runtime: "runsc", dockerEnabled: true, network: "host" },
      { engineSocket: host.socket, stopGrace: "5 seconds", dockerVia }
    )
  )
const gvisorSandbox = gvisorSandboxVia()

// The first run on a fresh machine builds the Debian image with debootstrap (~3 min).
const TIMEOUT = Duration.toMillis(Duration.minutes(10))

const ContainerInspect = Schema.Struct({
  HostConfig: Schema.Struct({ Runtime: Schema.String })
})

const EngineInfo = Schema.Struct({ ID: Schema.String, Driver: Schema.String })

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
      "create, ready, pull, run over a host socket (--host-uds=create): on runsc (gVisor's kernel answers inside) Docker is ready on vfs, its socket and containerd's answer this machine, the pull goes over the inner Engine API and a container runs",
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
          // A socket made inside gVisor, answering here: Docker inside's.
          const socket = sandbox.dockerSocket
          if (socket === undefined)
            return expect.fail("a runsc sandbox with --host-uds=create has no dockerSocket")
          expect(lstatSync(socket).isSocket()).toBe(true)
          const inner = yield* DockerEngine.make(socket)
          const innerInfo = yield* inner.request("GET", "/info", { schema: EngineInfo })
          const hostInfo = yield* engine.request("GET", "/info", { schema: EngineInfo })
          expect(innerInfo.ID).not.toBe(hostInfo.ID)
          expect(innerInfo.Driver).toBe("vfs")
          // containerd's socket, in the exec-root beside it, answers too.
          const containerd = yield* Containerd.make(
            Path.join(Path.dirname(socket), "exec", "containerd", "containerd.sock")
          )
          expect((yield* containerd.version).version).toMatch(/^\d+\.\d+/)
          // The pull over the inner Engine API: per-layer events, no process inside.
          const pull = yield* sandbox.docker.pull(host.image)
          const events = Chunk.toReadonlyArray(yield* Stream.runCollect(pull.progress))
          yield* pull.wait
          expect(pull.process.pid).toBe(0)
          expect(events.some((event) => event.status === "Pull complete")).toBe(true)
          yield* inner.request("GET", `/images/${encodeURIComponent(host.image)}/json`)
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
      "dockerVia exec on runsc: no host socket (dockerSocket undefined); Docker inside is ready by exec probes, pulls by docker pull inside and runs a container",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* gvisorSandboxVia("exec")
          expect(sandbox.dockerSocket).toBeUndefined()
          const daemon = yield* sandbox.daemon
          expect(daemon.storageDriver).toBe("vfs")
          const pull = yield* sandbox.docker.pull(host.image)
          yield* pull.wait
          // docker pull, a process inside.
          expect(pull.process.pid).toBeGreaterThan(0)
          const output = yield* Effect.flatMap(
            sandbox.docker.run(host.image, ["/bin/busybox", "echo", "by exec"], { remove: true }),
            (container) => container.output
          )
          expect(output.stdout.trim()).toBe("by exec")
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

    for (const dockerVia of ["host-socket", "exec"] as const)
      it.scoped(
        dockerVia === "exec"
          ? "exec: the inner dockerd killed after ready: sandbox.daemon and docker commands fail with DaemonDied, exit 137 (SIGKILL from outside the process manager, as the exec's shell reports it)"
          : "host-socket: the inner dockerd killed after ready: sandbox.daemon and docker commands fail with DaemonDied, signal SIGKILL (the dockerd the entrypoint started, adopted)",
        () =>
          Effect.gen(function* () {
            const sandbox = yield* gvisorSandboxVia(dockerVia)
            expect(sandbox.dockerSocket === undefined).toBe(dockerVia === "exec")
            const daemon = yield* sandbox.daemon
            yield* execLines(sandbox, ["sh", "-c", "kill -KILL $(cat /var/run/docker.pid)"])
            // The supervisor sees the exit and settles the sandbox's Docker state.
            const error = yield* Effect.flip(sandbox.daemon).pipe(
              Effect.retry({ schedule: Schedule.spaced("200 millis") }),
              Effect.timeout("60 seconds")
            )
            expect(error).toMatchObject(
              dockerVia === "exec"
                ? { _tag: "DaemonDied", pid: daemon.pid, exitCode: 137 }
                : { _tag: "DaemonDied", pid: daemon.pid, signal: "SIGKILL" }
            )
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
      "remove: the sandbox's container, every process of it (runsc sandbox, gofer, shim, dockerd) and its host directory (the sockets made inside) are gone",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* gvisorSandbox
          yield* sandbox.daemon
          const shared = Path.dirname(sandbox.dockerSocket ?? "")
          expect(existsSync(Path.join(shared, "docker.sock"))).toBe(true)
          expect(yield* pidsMentioning(sandbox.id)).not.toEqual([])
          yield* sandbox.remove
          expect(yield* pidsMentioning(sandbox.id)).toEqual([])
          expect(existsSync(shared)).toBe(false)
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
    const createOn = (
      runtimes: (dir: string) => unknown,
      dockerVia?: Sandbox.CreateOptions["dockerVia"]
    ) =>
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
              { engineSocket: socket, dockerVia }
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
      "runsc not registered, without --network=host, without --net-raw, too old, or without --host-uds=create when a host socket is asked for: RunscUnsuitable naming the fix; nothing created",
      () =>
        Effect.gen(function* () {
          const runsc = (path: string, runtimeArgs: ReadonlyArray<string>) => ({
            runsc: { path, runtimeArgs }
          })
          const cases: ReadonlyArray<{
            readonly runtimes: (dir: string) => unknown
            readonly problem: Gvisor.Problem
            readonly dockerVia?: Sandbox.CreateOptions["dockerVia"]
          }> = [
            { runtimes: () => ({}), problem: "not-registered" },
            { runtimes: () => runsc("runsc", ["--net-raw"]), problem: "network-not-host" },
            { runtimes: () => runsc("runsc", ["--network=host"]), problem: "no-net-raw" },
            // A stand-in printing Debian 12's runsc version line (the engine only registers it).
            {
              runtimes: (dir) => runsc(`${dir}/old-runsc`, Gvisor.RUNTIME_ARGS),
              problem: "too-old"
            },
            {
              runtimes: () => runsc("runsc", ["--net-raw", "--network=host", "--host-uds=open"]),
              problem: "no-host-uds",
              dockerVia: "host-socket"
            }
          ]
          for (const { dockerVia, problem, runtimes } of cases) {
            const { containers, error } = yield* createOn(runtimes, dockerVia)
            expect(error).toMatchObject({ _tag: "RunscUnsuitable", problem })
            expect(error.message).toContain(
              problem === "too-old" ? "bookworm-backports" : "daemon.json"
            )
            if (problem === "no-host-uds") {
              expect(error).toMatchObject({
                runtimeArgs: ["--net-raw", "--network=host", "--host-uds=open"]
              })
              expect(error.message).toContain("--host-uds=create")
              expect(error.message).toContain('dockerVia: "exec"')
            }
            expect(containers).toEqual([])
          }
        }),
      TIMEOUT
    )

    it.live(
      "runsc registered without --host-uds: a sandbox asking for no way in is reached by exec (dockerSocket undefined) and Docker inside is ready",
      () =>
        withDir((dir) =>
          Effect.gen(function* () {
            yield* Effect.promise(() =>
              writeFile(
                `${dir}/daemon.json`,
                JSON.stringify({
                  runtimes: {
                    runsc: { path: "runsc", runtimeArgs: ["--net-raw", "--network=host"] }
                  }
                })
              )
            )
            const config = isolatedConfig(dir, {
              extraArgs: ["--bridge=none", "--ip6tables=false", `--config-file=${dir}/daemon.json`]
            })
            const engine = yield* Dockerd.start(config)
            yield* Effect.promise(() =>
              run("bash", [BUILD_IMAGES, "debian-docker"], {
                env: { ...process.env, DOCKER_HOST: `unix://${engine.socket}` },
                maxBuffer: 1 << 24
              })
            )
            yield* Effect.scoped(
              Effect.gen(function* () {
                const sandbox = yield* Sandbox.create(
                  { image: SANDBOX_IMAGE, runtime: "runsc", dockerEnabled: true, network: "host" },
                  { engineSocket: engine.socket, stopGrace: "5 seconds" }
                )
                expect(sandbox.dockerSocket).toBeUndefined()
                const daemon = yield* sandbox.daemon
                expect(daemon.storageDriver).toBe("vfs")
              })
            )
          })
        ),
      TIMEOUT
    )
  }
)
