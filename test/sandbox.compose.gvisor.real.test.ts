/**
 * Compose and volumes in Docker-enabled sandboxes on gVisor (runsc), on a
 * real host engine with runsc registered and a local registry
 * (scripts/seedScenario.ts's host environment). Docker inside has no
 * network of its own to give there: every service runs with
 * `network_mode: host`, set by the library's override file, and the
 * services reach each other on localhost.
 */
import { describe, expect, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Dockerd from "../src/Dockerd.js"
import * as Sandbox from "../src/Sandbox.js"
import { type HostEnvironment, hostEnvironment, SANDBOX_IMAGE } from "../scripts/seedScenario.js"
import { firstLineWith, shell, twoServiceProject, volumeLifecycle } from "./support/compose.js"
import { hasRunsc } from "./support/isolated.js"

class Host extends Context.Tag("test/ComposeGvisorHost")<Host, HostEnvironment>() {}

const HostLive = Layer.scoped(Host, hostEnvironment()).pipe(Layer.provideMerge(Dockerd.layerNode))

// The first run on a fresh machine builds the Debian image with debootstrap.
const TIMEOUT = Duration.toMillis(Duration.minutes(10))

/**
 * A Docker-enabled sandbox on runsc, on the engine's network (where the
 * registry listens), reached the default way or the one given.
 */
const sandboxVia = (dockerVia?: "host-socket" | "exec") =>
  Effect.flatMap(Host, (host) =>
    Sandbox.create(
      { image: SANDBOX_IMAGE, runtime: "runsc", dockerEnabled: true, network: "host" },
      { engineSocket: host.socket, stopGrace: "5 seconds", dockerVia }
    )
  )
const gvisorSandbox = sandboxVia()

describe.skipIf(!hasRunsc())("compose and volumes in a gVisor (runsc) sandbox", () => {
  layer(HostLive, { timeout: TIMEOUT, excludeTestServices: true })((it) => {
    // Either way in to Docker inside (the engine's socket through a host directory, or exec).
    for (const via of ["host-socket", "exec"] as const)
      it.scoped(
        `a two-service compose file from the local registry comes up on runsc (Docker reached by ${via}) with network_mode host, one service reaches the other on localhost, its logs stream live, and down --volumes leaves no container, network or volume`,
        () =>
          Effect.gen(function* () {
            const host = yield* Host
            const sandbox = yield* sandboxVia(via)
            // gVisor's own kernel answers inside (runc's host kernel never prints this).
            expect((yield* shell(sandbox, "dmesg")).lines.join("\n")).toContain("gVisor")
            yield* twoServiceProject(sandbox, host.image, "runsc")
          }),
        TIMEOUT
      )

    it.scoped(
      "on runsc a named volume survives its container's removal, is listed and inspected, refuses rm while in use, and goes with volume rm",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* gvisorSandbox
          yield* volumeLifecycle(sandbox, host.image)
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
