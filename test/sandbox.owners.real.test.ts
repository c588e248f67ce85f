/**
 * Sandboxes' owners, leases, reaping and init, on a real host engine
 * (scripts/seedScenario.ts's `hostEnvironment`, set up once for the file):
 * docker-init reaps orphans and passes a stop's SIGTERM on; `Sandbox.reap`
 * removes the sandboxes whose owner is gone or whose lease ran out, and
 * nothing else.
 */
import { execFile, spawn } from "node:child_process"
import { promisify } from "node:util"
import { describe, expect, layer } from "@effect/vitest"
import * as FileSystem from "@effect/platform/FileSystem"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as ContainerProcessManager from "../src/ContainerProcessManager.js"
import * as Dockerd from "../src/Dockerd.js"
import * as DockerEngine from "../src/DockerEngine.js"
import { pidsMentioning } from "../src/internal/processTree.js"
import type { ProcessManagerShape } from "../src/ProcessManager.js"
import * as Sandbox from "../src/Sandbox.js"
import * as SandboxLease from "../src/SandboxLease.js"
import {
  BUSYBOX_IMAGE,
  type HostEnvironment,
  hostEnvironment,
  SANDBOX_IMAGE
} from "../scripts/seedScenario.js"
import { hasDockerd } from "./support/isolated.js"

const real = hasDockerd()
const run = promisify(execFile)

class Host extends Context.Tag("test/OwnersHost")<Host, HostEnvironment>() {}

const HostLive = Layer.scoped(Host, hostEnvironment()).pipe(
  Layer.provideMerge(Layer.mergeAll(Dockerd.layerNode, NodeFileSystem.layer))
)

// The first run on a fresh machine builds the Debian image with debootstrap (~3 min).
const TIMEOUT = Duration.toMillis(Duration.minutes(10))

const Inspected = Schema.Struct({
  Id: Schema.String,
  State: Schema.Struct({ Running: Schema.Boolean, ExitCode: Schema.Number }),
  Config: Schema.Struct({
    Labels: Schema.NullishOr(Schema.Record({ key: Schema.String, value: Schema.String }))
  }),
  HostConfig: Schema.Struct({ Init: Schema.NullishOr(Schema.Boolean) }),
  Mounts: Schema.Array(
    Schema.Struct({ Name: Schema.optional(Schema.String), Destination: Schema.String })
  )
})

const inspect = (engine: DockerEngine.DockerEngineClient, id: string) =>
  engine.request("GET", `/containers/${id}/json`, { schema: Inspected })

/** Whether the engine still has the container (or volume) at `path`. */
const exists = (engine: DockerEngine.DockerEngineClient, path: string) =>
  engine.request("GET", path).pipe(
    Effect.as(true),
    Effect.catchIf(
      (error) => error._tag === "EngineBadAnswer" && error.status === 404,
      () => Effect.succeed(false)
    )
  )

/** Runs a command in a container: its output lines. */
const lines = (manager: ProcessManagerShape, argv: readonly [string, ...Array<string>]) =>
  Effect.scoped(
    Effect.gen(function* () {
      const handle = yield* manager.exec(argv, { tailLines: 200 })
      yield* handle.awaitExit
      return yield* handle.logTail
    })
  )

/**
 * Starts a process in the background whose child outlives it and exits a
 * second later (an orphan), then, once it had the time to exit, counts the
 * zombies in the container's /proc.
 */
const ORPHAN_THEN_COUNT_ZOMBIES = `sh -c "sleep 1 &"
sleep 3
n=0
for f in /proc/[0-9]*/stat; do
  case "$(cat "$f" 2>/dev/null)" in *") Z "*) n=$((n + 1)) ;; esac
done
echo "zombies $n"`

/** A container without any of our labels, and without init. */
const plainContainer = (engine: DockerEngine.DockerEngineClient) =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      const created = yield* engine.request("POST", "/containers/create", {
        body: {
          Image: BUSYBOX_IMAGE,
          Entrypoint: ["sleep", "infinity"],
          Cmd: [],
          HostConfig: { NetworkMode: "host" }
        },
        schema: Schema.Struct({ Id: Schema.String })
      })
      yield* engine.request("POST", `/containers/${created.Id}/start`)
      return created.Id
    }),
    (id) => Sandbox.removeContainer(engine, id)
  )

/** A process that can own a sandbox, and kill it. */
const ownerProcess = Effect.acquireRelease(
  Effect.sync(() => spawn("sleep", ["600"], { stdio: "ignore" })),
  (child) => Effect.sync(() => child.kill("SIGKILL"))
)

const killed = (child: ReturnType<typeof spawn>) =>
  Effect.async<void>((resume) => {
    child.once("exit", () => resume(Effect.void))
    child.kill("SIGKILL")
  })

describe.skipIf(!real)("sandboxes have owners and an init", () => {
  layer(HostLive, { timeout: TIMEOUT, excludeTestServices: true })((it) => {
    it.scoped(
      "docker-init is the sandbox's PID 1: an orphan that exits is reaped, where a container without init keeps it a zombie",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const engine = yield* DockerEngine.make(host.socket)
          const sandbox = yield* Sandbox.create(
            { image: BUSYBOX_IMAGE, network: "host" },
            { engineSocket: host.socket }
          )
          expect((yield* inspect(engine, sandbox.id)).HostConfig.Init).toBe(true)
          expect(
            yield* lines(sandbox.processManager, ["sh", "-c", ORPHAN_THEN_COUNT_ZOMBIES])
          ).toEqual(["zombies 0"])
          // The control: the same in a container whose PID 1 is `sleep`.
          const plain = yield* plainContainer(engine)
          const manager = yield* ContainerProcessManager.make({
            socket: host.socket,
            containerId: plain
          })
          expect(yield* lines(manager, ["sh", "-c", ORPHAN_THEN_COUNT_ZOMBIES])).toEqual([
            "zombies 1"
          ])
          yield* sandbox.remove
        }),
      TIMEOUT
    )

    it.scoped(
      "a stop's SIGTERM ends the sandbox (exit 143) instead of the SIGKILL after the grace (137, without init)",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const engine = yield* DockerEngine.make(host.socket)
          const sandbox = yield* Sandbox.create(
            { image: BUSYBOX_IMAGE, network: "host" },
            { engineSocket: host.socket }
          )
          // A grace of 10 minutes: only a process that ends on SIGTERM ends this stop early.
          yield* engine.request("POST", `/containers/${sandbox.id}/stop?t=600`)
          expect((yield* inspect(engine, sandbox.id)).State).toEqual({
            Running: false,
            ExitCode: 143
          })
          const plain = yield* plainContainer(engine)
          yield* engine.request("POST", `/containers/${plain}/stop?t=1`)
          expect((yield* inspect(engine, plain)).State.ExitCode).toBe(137)
          yield* sandbox.remove
        }),
      TIMEOUT
    )

    it.scoped(
      "under runsc too, docker-init is PID 1 and reaps the orphan",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const engine = yield* DockerEngine.make(host.socket)
          const sandbox = yield* Sandbox.create(
            { image: BUSYBOX_IMAGE, network: "host", runtime: "runsc" },
            { engineSocket: host.socket }
          )
          expect((yield* inspect(engine, sandbox.id)).HostConfig.Init).toBe(true)
          const pid1 = yield* lines(sandbox.processManager, ["cat", "/proc/1/cmdline"])
          expect(pid1.join("").replace(/\0/g, " ")).toContain("docker-init")
          expect(
            yield* lines(sandbox.processManager, ["sh", "-c", ORPHAN_THEN_COUNT_ZOMBIES])
          ).toEqual(["zombies 0"])
          yield* sandbox.remove
        }),
      TIMEOUT
    )

    it.scoped(
      "a sandbox carries this process as its owner and a lease file, renewed while its scope lives and removed with it",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const engine = yield* DockerEngine.make(host.socket)
          const dir = `${host.dir}/leases-renewed`
          const sandbox = yield* Sandbox.create(
            { image: BUSYBOX_IMAGE, network: "host" },
            { engineSocket: host.socket, lease: { ttl: "3 seconds", dir } }
          )
          const labels = (yield* inspect(engine, sandbox.id)).Config.Labels ?? {}
          expect(labels[SandboxLease.OWNER_LABEL]).toBe(yield* SandboxLease.processOwner())
          expect(labels[SandboxLease.OWNER_LABEL]).toBe(sandbox.owner)
          const path = labels[SandboxLease.LEASE_LABEL] ?? ""
          expect(path.startsWith(`${dir}/`)).toBe(true)
          const fs = yield* FileSystem.FileSystem
          const readAt = (p: string) =>
            Effect.flatMap(
              fs.readFileString(p),
              Schema.decodeUnknown(Schema.parseJson(SandboxLease.LeaseFile))
            )
          const first = yield* readAt(path)
          // Twice the ttl later, the lease is still valid: it was renewed meanwhile.
          yield* Effect.sleep("6 seconds")
          const later = yield* readAt(path)
          expect(later.expiresAt).toBeGreaterThan(first.expiresAt + 3000)
          expect(later.expiresAt).toBeGreaterThan(Date.now())
          const judged = yield* Sandbox.reap({ engineSocket: host.socket, dryRun: true })
          expect(judged.find((j) => j.id === sandbox.id)?.verdict).toMatchObject({ _tag: "Keep" })
          yield* sandbox.remove
          expect(yield* Effect.either(readAt(path))).toMatchObject({ _tag: "Left" })
        }),
      TIMEOUT
    )

    it.scoped(
      "a lease that cannot be renewed: LeaseRenewFailed naming the file",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* Sandbox.create(
            { image: BUSYBOX_IMAGE, network: "host" },
            { engineSocket: host.socket, lease: { dir: `${host.dir}/leases-blocked` } }
          )
          const engine = yield* DockerEngine.make(host.socket)
          const path = (yield* inspect(engine, sandbox.id)).Config.Labels?.[
            SandboxLease.LEASE_LABEL
          ]
          // A directory where the renewal writes its new file: the write fails, even as root.
          yield* (yield* FileSystem.FileSystem).makeDirectory(`${path}.tmp`)
          const error = yield* Effect.flip(sandbox.renew)
          expect(error).toMatchObject({ _tag: "LeaseRenewFailed", path })
          expect(error.message).toContain("sandbox gc")
          yield* sandbox.remove
        }),
      TIMEOUT
    )

    it.scoped(
      "reap: a Docker sandbox whose owner is gone goes (inner containers, dockerd, container, volume); one whose owner lives with a valid lease and an unlabelled container stay",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const engine = yield* DockerEngine.make(host.socket)
          const child = yield* ownerProcess
          const owner = yield* SandboxLease.processOwner(child.pid)
          const orphan = yield* Sandbox.create(
            { image: SANDBOX_IMAGE, dockerEnabled: true, network: "host" },
            {
              engineSocket: host.socket,
              stopGrace: "3 seconds",
              lease: { owner, dir: `${host.dir}/leases-orphan` }
            }
          )
          yield* orphan.daemon
          // An inner container that runs: its shim and process are in the sandbox.
          yield* Effect.scoped(Effect.flatMap(orphan.docker.pull(host.image), (pull) => pull.wait))
          yield* Effect.scoped(
            Effect.flatMap(
              orphan.docker.run(host.image, ["/bin/busybox", "sleep", "600"], { detach: true }),
              (run) => run.output
            )
          )
          const volume = (yield* inspect(engine, orphan.id)).Mounts.find(
            (mount) => mount.Destination === "/var/lib/docker"
          )?.Name
          expect(volume).toBeDefined()
          const kept = yield* Sandbox.create(
            { image: BUSYBOX_IMAGE, network: "host" },
            { engineSocket: host.socket, lease: { dir: `${host.dir}/leases-kept` } }
          )
          const plain = yield* plainContainer(engine)

          // While the owner lives, nothing is judged for removal.
          const before = yield* Sandbox.reap({ engineSocket: host.socket, dryRun: true })
          expect(before.find((j) => j.id === orphan.id)?.verdict._tag).toBe("Keep")

          yield* killed(child)
          const dry = yield* Sandbox.reap({ engineSocket: host.socket, dryRun: true })
          expect(dry.find((j) => j.id === orphan.id)).toMatchObject({
            verdict: { _tag: "Reap", reason: `owner gone: process ${child.pid} has exited` },
            removed: false
          })
          expect(dry.find((j) => j.id === kept.id)?.verdict).toEqual({
            _tag: "Keep",
            reason: expect.stringContaining("lease valid for")
          })
          expect(dry.map((j) => j.id)).not.toContain(plain)
          expect(yield* exists(engine, `/containers/${orphan.id}/json`)).toBe(true)

          const done = yield* Sandbox.reap({ engineSocket: host.socket })
          expect(done.find((j) => j.id === orphan.id)).toMatchObject({ removed: true })
          expect(done.find((j) => j.id === kept.id)).toMatchObject({ removed: false })
          expect(yield* exists(engine, `/containers/${orphan.id}/json`)).toBe(false)
          expect(yield* exists(engine, `/volumes/${volume}`)).toBe(false)
          expect(yield* pidsMentioning(orphan.id)).toEqual([])
          expect(yield* exists(engine, `/containers/${kept.id}/json`)).toBe(true)
          expect(yield* exists(engine, `/containers/${plain}/json`)).toBe(true)
          yield* kept.remove
        }),
      TIMEOUT
    )

    it.scoped(
      "reap: a sandbox the engine will not remove is SandboxReapFailed in its entry, and the others still go",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const engine = yield* DockerEngine.make(host.socket)
          const child = yield* ownerProcess
          const owner = yield* SandboxLease.processOwner(child.pid)
          const spec = yield* Sandbox.decodeSpec({ image: BUSYBOX_IMAGE, network: "host" })
          const stuck = yield* Sandbox.createContainer(
            engine,
            spec,
            SandboxLease.ownerLabels(owner)
          )
          const other = yield* Sandbox.createContainer(
            engine,
            spec,
            SandboxLease.ownerLabels(owner)
          )
          // A file the engine cannot delete in the sandbox's writable layer.
          const upper = (yield* engine.request("GET", `/containers/${stuck.id}/json`, {
            schema: Schema.Struct({
              GraphDriver: Schema.Struct({
                Data: Schema.Struct({ UpperDir: Schema.String })
              })
            })
          })).GraphDriver.Data.UpperDir
          const pinned = `${upper}/pinned`
          yield* Effect.acquireRelease(
            Effect.promise(() => run("sh", ["-c", 'touch "$1" && chattr +i "$1"', "sh", pinned])),
            () =>
              Effect.promise(() => run("chattr", ["-i", pinned])).pipe(
                Effect.zipRight(Sandbox.removeContainer(engine, stuck.id))
              )
          )
          yield* killed(child)
          const done = yield* Sandbox.reap({ engineSocket: host.socket })
          const entry = done.find((j) => j.id === stuck.id)
          expect(entry).toMatchObject({
            removed: false,
            error: { _tag: "SandboxReapFailed", sandbox: stuck.name, id: stuck.id }
          })
          expect(entry?.error?.message).toContain("sandbox gc again")
          expect(done.find((j) => j.id === other.id)).toMatchObject({ removed: true })
          expect(yield* exists(engine, `/containers/${other.id}/json`)).toBe(false)
        }),
      TIMEOUT
    )

    it.scoped(
      "reap: a sandbox whose lease ran out goes, though its owner (this process) lives",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const engine = yield* DockerEngine.make(host.socket)
          // A lease nobody renews: taken, then left to run out.
          const lease = yield* SandboxLease.make({ ttl: "1 second", dir: `${host.dir}/leases-out` })
          const container = yield* Sandbox.createContainer(
            engine,
            yield* Sandbox.decodeSpec({ image: BUSYBOX_IMAGE, network: "host" }),
            lease.labels
          )
          yield* Effect.addFinalizer(() => Sandbox.removeContainer(engine, container.id))
          yield* Effect.sleep("1500 millis")
          const done = yield* Sandbox.reap({ engineSocket: host.socket })
          expect(done.find((j) => j.id === container.id)).toMatchObject({
            verdict: {
              _tag: "Reap",
              reason: expect.stringMatching(/^lease ran out \d+(ms|s) ago$/)
            },
            removed: true
          })
          expect(yield* exists(engine, `/containers/${container.id}/json`)).toBe(false)
          // The lease file went with it.
          expect(yield* Effect.either(lease.read)).toMatchObject({ _tag: "Left" })
        }),
      TIMEOUT
    )
  })
})

describe("owners on this host, and reaping on an engine nobody serves", () => {
  layer(NodeFileSystem.layer)((it) => {
    it.effect(
      "this process is alive; a pid that does not exist cannot own a sandbox; a reused pid is gone",
      () =>
        Effect.gen(function* () {
          const me = yield* SandboxLease.processOwner()
          const parsed = SandboxLease.parseOwner(me)
          expect(yield* SandboxLease.ownerState(parsed)).toEqual({ _tag: "Alive" })
          const error = yield* Effect.flip(SandboxLease.processOwner(2 ** 22 + 1))
          expect(error).toMatchObject({ _tag: "OwnerNotFound", pid: 2 ** 22 + 1 })
          expect(error.message).toContain("no such process")
          if (parsed._tag !== "Process") throw new Error(`not a process owner: ${me}`)
          // The same pid with another start time: the pid was reused, the owner is gone.
          expect(yield* SandboxLease.ownerState({ ...parsed, startTicks: "1" })).toMatchObject({
            _tag: "Gone",
            reason: expect.stringContaining("another process")
          })
          expect(yield* SandboxLease.ownerState({ ...parsed, bootId: "0000" })).toMatchObject({
            _tag: "Gone",
            reason: expect.stringContaining("last boot")
          })
          expect(yield* SandboxLease.ownerState({ ...parsed, host: "elsewhere" })).toMatchObject({
            _tag: "Unknown"
          })
        })
    )

    it.effect("Sandbox.reap fails with EngineUnreachable naming the socket", () =>
      Effect.gen(function* () {
        const error = yield* Effect.flip(Sandbox.reap({ engineSocket: "/nonexistent/engine.sock" }))
        expect(error).toMatchObject({
          _tag: "EngineUnreachable",
          socket: "/nonexistent/engine.sock"
        })
      })
    )
  })
})
