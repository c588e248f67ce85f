/**
 * The built-in checks against the Engine and containerd test layers (the
 * answers a user scripts), and the socket check on a real directory: what
 * `stat` finds, and the wake-up its directory watch gives when a unix
 * socket is created there.
 */
import * as Net from "node:net"
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as FileSystem from "@effect/platform/FileSystem"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Containerd from "../src/Containerd.js"
import * as DockerEngine from "../src/DockerEngine.js"
import { ProbeFailed, ProbeNotYet, ProbeTimedOut } from "../src/errors.js"
import * as Probe from "../src/Probe.js"

const options = { timeoutFor: () => Duration.seconds(1) }

const info = new DockerEngine.InfoAnswer({ ServerVersion: "28.2.2", Driver: "overlay2" })
const version = new Containerd.ContainerdVersion({ version: "1.7.27", revision: "abc" })

describe("the Engine and containerd test layers", () => {
  it.effect(
    "a ping with no answer is not yet; one answering after 3 s of the clock is ready then",
    () =>
      Effect.gen(function* () {
        const silent = yield* DockerEngine.DockerEngine.pipe(
          Effect.provide(DockerEngine.layerTest())
        )
        const notYet = yield* Effect.flip(Probe.run(Probe.enginePing(silent), options))
        expect(notYet).toStrictEqual(
          new ProbeNotYet({ probe: "ping", reason: "ECONNREFUSED on /test/docker.sock" })
        )

        const later = DockerEngine.fromAnswers("/run/x.sock", {
          ping: Effect.flatMap(Clock.currentTimeMillis, (now) =>
            now < 3000
              ? new DockerEngine.EngineUnreachable({
                  socket: "/run/x.sock",
                  code: "ENOENT",
                  reason: "not yet"
                })
              : Effect.succeed(new DockerEngine.PingAnswer({ apiVersion: "1.50" }))
          )
        })
        const check = Probe.enginePing(later)
        expect((yield* Effect.flip(Probe.run(check, options)))._tag).toBe("ProbeNotYet")
        yield* TestClock.adjust("3 seconds")
        const [ok] = yield* Probe.run(check, options)
        expect(ok?.value).toStrictEqual(new DockerEngine.PingAnswer({ apiVersion: "1.50" }))
      })
  )

  it.effect("request and upgrade fail unless answers serve them; a served request is decoded", () =>
    Effect.gen(function* () {
      const bare = DockerEngine.fromAnswers("/s", {})
      const refused = yield* Effect.flip(bare.request("POST", "/containers/x/start"))
      expect(refused).toMatchObject({
        _tag: "EngineBadAnswer",
        reason: "the test client does not serve POST /containers/x/start"
      })
      const noUpgrade = yield* Effect.flip(Effect.scoped(bare.upgrade("/exec/1/start", {})))
      expect(noUpgrade).toMatchObject({ _tag: "EngineBadAnswer", path: "/exec/1/start" })

      const served = DockerEngine.fromAnswers("/s", {
        request: (method, path) => Effect.succeed({ method, path })
      })
      const undecodable = yield* Effect.flip(
        served.request("GET", "/version", { schema: DockerEngine.VersionAnswer })
      )
      expect(undecodable).toMatchObject({ _tag: "EngineBadAnswer", path: "/version" })
      yield* served.request("DELETE", "/containers/x")
      const decoded = yield* DockerEngine.fromAnswers("/s", {
        request: () => Effect.succeed({ Version: "28.2.2", ApiVersion: "1.50", Os: "linux" })
      }).request("GET", "/version", { schema: DockerEngine.VersionAnswer })
      expect(decoded).toStrictEqual(
        new DockerEngine.VersionAnswer({ Version: "28.2.2", ApiVersion: "1.50" })
      )
    })
  )

  it.effect("containerd: unreachable falls back to the Engine's /info; warm follows version", () =>
    Effect.gen(function* () {
      const { connect } = yield* Containerd.ContainerdConnector
      const engines = yield* DockerEngine.DockerEngineConnector
      const nobody = yield* connect("unix:///run/nobody.sock")
      expect(nobody.address).toBe("/run/nobody.sock")
      expect(yield* nobody.warm).toBe(false)
      const alone = yield* Effect.flip(Probe.run(Probe.containerdVersion(nobody), options))
      expect(alone).toStrictEqual(
        new ProbeNotYet({ probe: "containerd", reason: "ECONNREFUSED on /run/nobody.sock" })
      )
      const engine = yield* engines.connect("/run/docker.sock")
      const [fellBack] = yield* Probe.run(
        Probe.containerdVersion(nobody, { fallback: engine }),
        options
      )
      expect(fellBack?.value).toBe(info)

      const serving = yield* connect("/run/containerd.sock")
      expect(yield* serving.warm).toBe(true)
      const [asked] = yield* Probe.run(
        Probe.containerdVersion(serving, { fallback: engine }),
        options
      )
      expect(asked?.value).toBe(version)
    }).pipe(
      Effect.scoped,
      Effect.provide([
        Containerd.layerConnectorTest((address) =>
          address === "/run/containerd.sock" ? { version: Effect.succeed(version) } : {}
        ),
        DockerEngine.layerConnectorTest(() => ({ info: Effect.succeed(info) }))
      ])
    )
  )

  it.effect("a bad containerd answer fails the check without falling back", () =>
    Effect.gen(function* () {
      const client = yield* Containerd.Containerd
      expect(yield* client.warm).toBe(true)
      const failed = yield* Effect.flip(
        Probe.run(
          Probe.containerdVersion(client, {
            fallback: DockerEngine.fromAnswers("/s", { info: Effect.succeed(info) })
          }),
          options
        )
      )
      expect(failed).toStrictEqual(
        new ProbeFailed({ probe: "containerd", reason: "gRPC status 14" })
      )
    }).pipe(
      Effect.provide(
        Containerd.layerTest({
          version: new Containerd.ContainerdBadAnswer({
            address: "/test/containerd.sock",
            reason: "gRPC status 14"
          })
        })
      )
    )
  )

  it.effect(
    "a check that does not answer times out on the clock, reported before the run fails",
    () =>
      Effect.gen(function* () {
        const seen: Array<string> = []
        const hung = DockerEngine.fromAnswers("/s", { ping: Effect.never })
        const fiber = yield* Effect.fork(
          Probe.run(
            Probe.all([Probe.enginePing(hung, { timeout: "250 millis" }), Probe.engineInfo(hung)]),
            {
              ...options,
              onOutcome: (outcome) =>
                Effect.sync(() => seen.push(`${outcome.probe}:${outcome._tag}`))
            }
          )
        )
        yield* TestClock.adjust("250 millis")
        expect(yield* Fiber.await(fiber)).toStrictEqual(
          Exit.fail(new ProbeTimedOut({ probe: "ping", timeoutMs: 250 }))
        )
        expect(seen).toEqual(["ping:ProbeTimedOut"])
      })
  )

  it.effect("a firstOf of no probes is a defect", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(Probe.run(Probe.firstOf([]), options))
      expect(Exit.isFailure(exit) && exit.cause._tag).toBe("Die")
    })
  )
})

describe("Probe.socketFile on a real directory", () => {
  const withTempDir = <A, E, R>(body: (dir: string) => Effect.Effect<A, E, R>) =>
    Effect.acquireUseRelease(
      Effect.sync(() => mkdtempSync(Path.join(Os.tmpdir(), "sandbox-docker-probe-"))),
      body,
      (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    )

  /** A unix socket listening at `path`, closed (and unlinked) with the scope. */
  const listenAt = (path: string) =>
    Effect.acquireRelease(
      Effect.async<Net.Server>((resume) => {
        const server = Net.createServer()
        server.once("error", (error) => resume(Effect.die(error)))
        server.listen(path, () => resume(Effect.succeed(server)))
      }),
      (server) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
    )

  it.live(
    "not yet while absent, a socket once one listens, a failure on a directory or a file",
    () =>
      withTempDir((dir) =>
        Effect.gen(function* () {
          const path = Path.join(dir, "docker.sock")
          const check = yield* Probe.socketFile(path)
          expect(yield* Effect.flip(Probe.run(check, options))).toStrictEqual(
            new ProbeNotYet({ probe: "socket", reason: `no socket at ${path}` })
          )
          yield* Effect.scoped(
            Effect.gen(function* () {
              yield* listenAt(path)
              const [ok] = yield* Probe.run(check, options)
              expect(ok?.value).toBe(path)
            })
          )
          mkdirSync(path)
          expect(yield* Effect.flip(Probe.run(check, options))).toStrictEqual(
            new ProbeFailed({ probe: "socket", reason: `${path} is a directory, not a socket` })
          )
        })
      ).pipe(Effect.provide(NodeFileSystem.layer))
  )

  it.live("its wake-ups: a unix socket created in the directory wakes it", () =>
    withTempDir((dir) =>
      Effect.gen(function* () {
        const path = Path.join(dir, "docker.sock")
        const check = yield* Probe.socketFile(path)
        const woken = yield* Effect.fork(Stream.runHead(check.wakeups!))
        // The watch starts when the fiber runs the stream, at a moment this
        // test cannot see, and a socket created before it goes unseen: so
        // create it (a listen; the close removes it) until it has woken.
        while (Option.isNone(yield* Fiber.poll(woken))) {
          yield* Effect.scoped(listenAt(path))
          yield* Effect.sleep("5 millis")
        }
        expect(yield* Fiber.join(woken)).toStrictEqual(Option.some(undefined))
      })
    ).pipe(Effect.provide(NodeFileSystem.layer))
  )

  it.effect("its wake-ups are the watch's events on the socket's name, whatever the event", () =>
    Effect.gen(function* () {
      const watched: Array<string> = []
      const fs = FileSystem.makeNoop({
        watch: (dir) => {
          watched.push(dir)
          return Stream.make(
            FileSystem.WatchEventCreate({ path: "other.sock" }),
            FileSystem.WatchEventCreate({ path: "docker.sock" }),
            FileSystem.WatchEventUpdate({ path: "docker.sock.tmp" }),
            FileSystem.WatchEventRemove({ path: "/run/x/docker.sock" })
          )
        }
      })
      const check = yield* Probe.socketFile("/run/x/docker.sock").pipe(
        Effect.provideService(FileSystem.FileSystem, fs)
      )
      expect(Chunk.size(yield* Stream.runCollect(check.wakeups!))).toBe(2)
      expect(watched).toEqual(["/run/x"])
    })
  )

  it.live("the wake-ups of a socket in a directory that does not exist just end", () =>
    Effect.gen(function* () {
      const check = yield* Probe.socketFile("/nonexistent-sandbox-docker/docker.sock")
      const events = yield* Stream.runCollect(check.wakeups!)
      expect(Chunk.size(events)).toBe(0)
    }).pipe(Effect.provide(NodeFileSystem.layer))
  )
})
