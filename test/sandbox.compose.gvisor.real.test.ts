/**
 * Compose and volumes in Docker-enabled sandboxes on gVisor (runsc), on a
 * real host engine with runsc registered and a local registry
 * (scripts/seedScenario.ts's host environment). Docker inside has no
 * network of its own to give there: every service runs with
 * `network_mode: host`, set by the library's override file, and the
 * services reach each other on localhost.
 */
import { execFileSync } from "node:child_process"
import { describe, expect, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Dockerd from "../src/Dockerd.js"
import * as Sandbox from "../src/Sandbox.js"
import type * as SandboxDocker from "../src/SandboxDocker.js"
import { type HostEnvironment, hostEnvironment, SANDBOX_IMAGE } from "../scripts/seedScenario.js"

const hasRunsc = (): boolean => {
  try {
    execFileSync("sh", ["-c", "command -v dockerd && command -v runsc"], { stdio: "ignore" })
    return true
  } catch {
    if (process.env.CI === "true") throw new Error("CI=true but dockerd or runsc is not installed")
    return false
  }
}

class Host extends Context.Tag("test/ComposeGvisorHost")<Host, HostEnvironment>() {}

const HostLive = Layer.scoped(Host, hostEnvironment()).pipe(Layer.provideMerge(Dockerd.layerNode))

// The first run on a fresh machine builds the Debian image with debootstrap.
const TIMEOUT = Duration.toMillis(Duration.minutes(10))

/** A Docker-enabled sandbox on runsc, on the engine's network (where the registry listens). */
const gvisorSandbox = Effect.flatMap(Host, (host) =>
  Sandbox.create(
    { image: SANDBOX_IMAGE, runtime: "runsc", dockerEnabled: true, network: "host" },
    { engineSocket: host.socket, stopGrace: "5 seconds" }
  )
)

/** Runs a shell script in the sandbox to its end: exit code and output lines. */
const shell = (sandbox: Sandbox.Sandbox, script: string) =>
  Effect.scoped(
    Effect.gen(function* () {
      const handle = yield* sandbox.exec(["sh", "-c", script], { tailLines: 200 })
      const status = yield* handle.awaitExit
      return { code: status._tag === "Exited" ? status.code : -1, lines: yield* handle.logTail }
    })
  )

/** stdout of a docker command in the sandbox, as lines. */
const dockerLines = (command: Effect.Effect<SandboxDocker.DockerCommand, unknown, Scope.Scope>) =>
  Effect.scoped(
    Effect.flatMap(command, (handle) =>
      Effect.map(handle.output, (output) =>
        output.stdout.split("\n").filter((line) => line.trim() !== "")
      )
    )
  )

/** The first line of a stream that contains `text`, and whether the process still ran then. */
const firstLineWith = (command: SandboxDocker.DockerCommand, text: string) =>
  command.lines.pipe(
    Stream.filter((line) => line.includes(text)),
    Stream.mapEffect((line) =>
      Effect.map(command.process.status, (status) => ({ line, running: status._tag === "Running" }))
    ),
    Stream.runHead,
    Effect.map(Option.getOrThrow)
  )

/**
 * Two services and a named volume, as a user writes them for a shared
 * network: `client` reaches `web` on localhost.
 */
const twoServices = (image: string) => `
services:
  web:
    image: ${image}
    command: ["sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 18081 -h /www"]
    volumes: ["data:/data"]
  client:
    image: ${image}
    command: ["sh", "-c", "until out=$$(wget -qO- http://127.0.0.1:18081/ 2>/dev/null); do sleep 0.2; done; echo \\"client got: $$out\\"; exec sleep 3600"]
volumes:
  data: {}
`

describe.skipIf(!hasRunsc())("compose and volumes in a gVisor (runsc) sandbox", () => {
  layer(HostLive, { timeout: TIMEOUT, excludeTestServices: true })((it) => {
    it.scoped(
      "a two-service compose file from the local registry comes up on runsc with network_mode host, one service reaches the other on localhost, its logs stream live, and down --volumes leaves no container, network or volume",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* gvisorSandbox
          // gVisor's own kernel answers inside (runc's host kernel never prints this).
          expect((yield* shell(sandbox, "dmesg")).lines.join("\n")).toContain("gVisor")
          const compose = sandbox.docker.compose
          const project = { file: { text: twoServices(host.image) }, project: "demo" }

          const up = yield* Effect.scoped(
            Effect.flatMap(compose.up(project), (command) =>
              Effect.zip(Stream.runCollect(command.lines), command.wait)
            )
          )
          const upLines = [...up[0]]
          expect(upLines.some((line) => /Creating demo_web_1/.test(line))).toBe(true)
          expect(upLines.some((line) => /Creating demo_client_1/.test(line))).toBe(true)

          const seen = yield* Effect.scoped(
            Effect.flatMap(
              compose.logs({ ...project, follow: true, services: ["client"] }),
              (logs) => firstLineWith(logs, "client got: hello-from-web")
            )
          )
          expect(seen.running).toBe(true)
          expect(seen.line).toMatch(/^client_1\s+\| client got: hello-from-web$/)

          const ps = yield* dockerLines(compose.ps(project))
          expect(ps.some((line) => /^demo_web_1\s.*\sUp/.test(line))).toBe(true)
          expect(ps.some((line) => /^demo_client_1\s.*\sUp/.test(line))).toBe(true)
          // The override: both services on the sandbox's network, no network made for the project.
          const modes = yield* shell(
            sandbox,
            "docker inspect --format '{{.HostConfig.NetworkMode}}' demo_web_1 demo_client_1"
          )
          expect(modes.lines).toEqual(["host", "host"])
          const networks = yield* shell(sandbox, "docker network ls --format '{{.Name}}'")
          expect([...networks.lines].sort()).toEqual(["host", "none"])
          const volumes = yield* sandbox.docker.volume.ls()
          expect(volumes.map((volume) => volume.Name)).toEqual(["demo_data"])

          yield* Effect.scoped(
            Effect.flatMap(compose.down({ ...project, volumes: true }), (down) => down.wait)
          )
          const after = yield* shell(
            sandbox,
            "docker ps --all --quiet; docker network ls --format '{{.Name}}'; docker volume ls --quiet"
          )
          expect(after.code).toBe(0)
          expect([...after.lines].sort()).toEqual(["host", "none"])
          const temps = yield* shell(sandbox, "ls /tmp | grep sandbox-docker-compose || true")
          expect(temps.lines).toEqual([])
        }),
      TIMEOUT
    )

    it.scoped(
      "on runsc a named volume survives its container's removal, refuses rm while in use, and goes with volume rm",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* gvisorSandbox
          const volume = sandbox.docker.volume
          expect(yield* volume.create("keep-data")).toBe("keep-data")
          const runWith = (argv: ReadonlyArray<string>) =>
            Effect.scoped(
              Effect.flatMap(
                sandbox.docker.run(host.image, argv, {
                  remove: true,
                  volumes: ["keep-data:/data"]
                }),
                (container) => container.output
              )
            )
          expect((yield* runWith(["sh", "-c", "echo kept > /data/file"])).exitCode).toBe(0)
          // The container that wrote it is gone (--rm); the volume and its file are not.
          expect(yield* shell(sandbox, "docker ps --all --quiet")).toMatchObject({ lines: [] })
          expect((yield* runWith(["cat", "/data/file"])).stdout.trim()).toBe("kept")
          expect((yield* volume.inspect("keep-data")).Name).toBe("keep-data")

          yield* Effect.scoped(
            Effect.flatMap(
              sandbox.docker.run(host.image, ["true"], {
                name: "holder",
                volumes: ["keep-data:/data"]
              }),
              (container) => container.wait
            )
          )
          expect(yield* Effect.flip(volume.rm("keep-data"))).toMatchObject({
            _tag: "VolumeInUse",
            volume: "keep-data"
          })
          yield* Effect.scoped(Effect.flatMap(sandbox.docker.rm("holder"), (rm) => rm.wait))
          yield* volume.rm("keep-data")
          expect(yield* volume.ls()).toEqual([])
          expect(yield* Effect.flip(volume.inspect("keep-data"))).toMatchObject({
            _tag: "VolumeNotFound"
          })
        }),
      TIMEOUT
    )

    it.scoped(
      "on runsc a file that asks for its own networks, links or network_mode is ComposeNetworkUnsupported before anything is created",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* gvisorSandbox
          const up = (text: string, project: string) =>
            Effect.flip(Effect.scoped(sandbox.docker.compose.up({ file: { text }, project })))
          const networks = yield* up(
            `
services:
  web:
    image: ${host.image}
    networks: [front]
networks:
  front: {}
`,
            "nets"
          )
          expect(networks).toMatchObject({
            _tag: "ComposeNetworkUnsupported",
            project: "nets",
            setting: "networks (front)"
          })
          expect(networks.message).toContain("under gVisor (runsc)")
          expect(networks.message).toContain("Remove networks (front) from the file")
          const links = yield* up(
            `
services:
  web:
    image: ${host.image}
  client:
    image: ${host.image}
    links: [web]
`,
            "links"
          )
          expect(links).toMatchObject({
            _tag: "ComposeNetworkUnsupported",
            service: "client",
            setting: "links"
          })
          const bridge = yield* up(
            `
services:
  web:
    image: ${host.image}
    network_mode: bridge
`,
            "bridge"
          )
          expect(bridge).toMatchObject({
            _tag: "ComposeNetworkUnsupported",
            service: "web",
            setting: "network_mode: bridge"
          })
          const left = yield* shell(
            sandbox,
            "docker ps --all --quiet; docker volume ls --quiet; docker network ls --format '{{.Name}}'; ls /tmp | grep sandbox-docker-compose || true"
          )
          expect([...left.lines].sort()).toEqual(["host", "none"])
        }),
      TIMEOUT
    )

    it.scoped(
      "on runsc a version 1 file (services at the top level) comes up with a version 1 override (net: host) and its services reach each other on localhost; one with a build is ComposeNetworkUnsupported saying to add version 2 and services",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* gvisorSandbox
          const version1 = `
web:
  image: ${host.image}
  command: ["sh", "-c", "mkdir -p /www && echo hello-v1 > /www/index.html && exec httpd -f -p 18083 -h /www"]
client:
  image: ${host.image}
  command: ["sh", "-c", "until out=$$(wget -qO- http://127.0.0.1:18083/ 2>/dev/null); do sleep 0.2; done; echo \\"client got: $$out\\"; exec sleep 3600"]
`
          const project = { file: { text: version1 }, project: "old" }
          yield* Effect.scoped(Effect.flatMap(sandbox.docker.compose.up(project), (up) => up.wait))
          const seen = yield* Effect.scoped(
            Effect.flatMap(
              sandbox.docker.compose.logs({ ...project, follow: true, services: ["client"] }),
              (logs) => firstLineWith(logs, "client got: hello-v1")
            )
          )
          expect(seen.running).toBe(true)
          const modes = yield* shell(
            sandbox,
            "docker inspect --format '{{.HostConfig.NetworkMode}}' old_web_1 old_client_1"
          )
          expect(modes.lines).toEqual(["host", "host"])
          yield* Effect.scoped(
            Effect.flatMap(sandbox.docker.compose.down(project), (down) => down.wait)
          )
          expect(yield* shell(sandbox, "docker ps --all --quiet")).toMatchObject({ lines: [] })

          const withBuild = yield* Effect.flip(
            Effect.scoped(
              sandbox.docker.compose.build({
                file: { text: "app:\n  build: .\n" },
                project: "oldbuild"
              })
            )
          )
          expect(withBuild).toMatchObject({
            _tag: "ComposeNetworkUnsupported",
            project: "oldbuild",
            service: "app",
            setting: expect.stringContaining("version 1")
          })
          expect(withBuild.message).toContain('add `version: "2"`')
          expect(withBuild.message).toContain("`services:` key")
        }),
      TIMEOUT
    )
  })
})
