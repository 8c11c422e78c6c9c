/**
 * GGUF tensor data to float32: the native dequantizer (binding/src/gguf_quants.cpp), bit-identical to the `gguf`
 * Python package's gguf.quants.dequantize.
 */
import { native } from "./native";

/** ggml type ids dequantize() accepts: F32 0, F16 1, Q4_0 2, Q4_1 3, Q5_0 6, Q5_1 7, Q8_0 8, Q4_K 12, Q5_K 13, Q6_K 14, BF16 30. */
export const GGML_DEQUANTIZABLE: ReadonlySet<number> = new Set([0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 30]);

/**
 * Dequantizes the raw blocks `src` of ggml type `type` into `dst` (synchronous). `src.byteLength` must be a whole
 * number of blocks and `dst.length` the number of elements they hold; otherwise, or for an unsupported type, throws
 * a RangeError naming the type.
 */
export function dequantize(type: number, src: Uint8Array, dst: Float32Array): void {
  native().dequantize(type, src, dst);
}
