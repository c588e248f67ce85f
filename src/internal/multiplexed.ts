/**
 * The Docker Engine's multiplexed stream (exec and attach without a TTY):
 * frames of an 8-byte header `[source, 0, 0, 0, size (uint32 BE)]` followed by
 * `size` bytes of payload. Source 1 is stdout, 2 is stderr (0, stdin, is
 * never sent by the Engine and is read as stdout).
 *
 * @internal
 */
import * as NodeStream from "@effect/platform-node/NodeStream"
import * as Stream from "effect/Stream"
import type { UpgradedConnection } from "../DockerEngine.js"
import type { OutputSource } from "./outputBuffer.js"

/** One frame's payload and where it came from. */
export interface Frame {
  readonly source: OutputSource
  readonly payload: Uint8Array
}

const HEADER_BYTES = 8

/**
 * Splits the bytes of a multiplexed stream into frames, whatever the chunk
 * boundaries: a header or a payload may span several chunks.
 */
export class FrameDecoder {
  private pending: Uint8Array = new Uint8Array(0)

  /** Feeds a chunk; returns the frames it completed. */
  push(chunk: Uint8Array): ReadonlyArray<Frame> {
    const bytes = this.pending.length === 0 ? chunk : concat(this.pending, chunk)
    const frames: Array<Frame> = []
    let offset = 0
    while (bytes.length - offset >= HEADER_BYTES) {
      const size = new DataView(bytes.buffer, bytes.byteOffset + offset + 4, 4).getUint32(0)
      const end = offset + HEADER_BYTES + size
      if (bytes.length < end) break
      frames.push({
        source: bytes[offset] === 2 ? "stderr" : "stdout",
        payload: bytes.subarray(offset + HEADER_BYTES, end)
      })
      offset = end
    }
    // Copy the remainder so the caller's chunk is not kept alive by a view.
    this.pending = bytes.slice(offset)
    return frames
  }

  /** Bytes of an incomplete frame left over (non-zero only on a cut stream). */
  get leftover(): number {
    return this.pending.length
  }
}

const concat = (a: Uint8Array, b: Uint8Array): Uint8Array => {
  const joined = new Uint8Array(a.length + b.length)
  joined.set(a, 0)
  joined.set(b, a.length)
  return joined
}

/**
 * The frames of an upgraded exec or attach connection; ends when the
 * Engine closes it.
 */
export const framesOf = (connection: UpgradedConnection): Stream.Stream<Frame> => {
  const decoder = new FrameDecoder()
  return Stream.succeed(connection.head).pipe(
    Stream.concat(
      NodeStream.fromReadable<unknown, Uint8Array>(
        () => connection.socket,
        (error) => error,
        { closeOnDone: false }
      )
    ),
    // A cut connection ends the output; the exit code says what happened.
    Stream.catchAll(() => Stream.empty),
    Stream.mapConcat((chunk) => decoder.push(chunk))
  )
}
