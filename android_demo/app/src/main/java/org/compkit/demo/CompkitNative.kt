package org.compkit.demo

/** Every error the native core reports (bad input, a missing tokenizer file, a model that does not fit). */
class CompkitException(message: String) : RuntimeException(message)

/**
 * The model call the core makes once per window: inputs are one window padded to a bucket length,
 * outputs are written into keepProb (and outlierZ, when the model exports it) of the same length.
 */
fun interface MoosScorer {
    fun score(inputIds: IntArray, attentionMask: IntArray, keepProb: FloatArray, outlierZ: FloatArray)
}

/** One compression: the text, every word with its keep decision, token counts and per-stage times. */
class MoosResult(
    val compressedText: String,
    val words: Array<String>,
    val kept: BooleanArray,
    val originTokens: Int,
    val compressedTokens: Int,
    val windows: Int,
    val stageNames: Array<String>,
    val stageMs: DoubleArray,
)

/**
 * The JNI surface of runtime_cpp (src/main/cpp/compkit_jni.cpp). Handles are native pointers:
 * use [MoosCompressor], which owns one and frees it.
 */
object CompkitNative {
    init {
        System.loadLibrary("compkit_jni")
    }

    @JvmStatic external fun moosCreate(
        tokenizerDir: String,
        buckets: IntArray,
        hasOutlier: Boolean,
        outlierWeight: Double,
        scorer: MoosScorer,
    ): Long

    @JvmStatic external fun moosCompress(
        handle: Long,
        text: String,
        rate: Double,
        targetToken: Int,
        forceTokens: Array<String>,
        forceReserveDigit: Boolean,
        dropConsecutive: Boolean,
        tokenToWordFirst: Boolean,
    ): MoosResult

    @JvmStatic external fun moosDestroy(handle: Long)

    /** Indices of the k highest scores (k > 0), else of round(n / ratio), in original order; ties keep the lower index. */
    @JvmStatic external fun evoSelect(scores: FloatArray, k: Int, ratio: Double): IntArray
}

/**
 * A MOOSComp compressor on the native core; the scorer runs the model (ExecuTorch here).
 * outlierWeight 0 is LLMLingua-2 exactly; > 0 fuses the model's outlier scores (MOOSComp).
 * Not thread-safe (the core's rule): one compressor per thread.
 */
class MoosCompressor(
    tokenizerDir: String,
    buckets: IntArray,
    hasOutlier: Boolean,
    scorer: MoosScorer,
    outlierWeight: Double = 0.0,
) : AutoCloseable {
    private var handle = CompkitNative.moosCreate(tokenizerDir, buckets, hasOutlier, outlierWeight, scorer)

    @Synchronized
    // rate is a Double end to end: 0.33f widened is 0.330000013, and LLMLingua's int(100 * (1 - rate) + 1)
    // then picks another percentile than Python's 0.33 does.
    // The options of LLMLingua-2's compress_prompt that the core implements (targetToken > 0 overrides rate).
    fun compress(
        text: String,
        rate: Double,
        targetToken: Int = -1,
        forceTokens: List<String> = emptyList(),
        forceReserveDigit: Boolean = false,
        dropConsecutive: Boolean = false,
        tokenToWordFirst: Boolean = false,
    ): MoosResult = CompkitNative.moosCompress(
        live(), text, rate, targetToken, forceTokens.toTypedArray(), forceReserveDigit, dropConsecutive, tokenToWordFirst,
    )

    private fun live(): Long {
        check(handle != 0L) { "MoosCompressor used after close()" }
        return handle
    }

    @Synchronized
    override fun close() {
        if (handle != 0L) CompkitNative.moosDestroy(handle)
        handle = 0L
    }
}
