package org.compkit.demo

import org.json.JSONObject
import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * The bundled EvoComp sample (assets/evo_sample, written by tools/make_evo_sample.py): the visual tokens
 * precomputed for an image and a question's text embeddings. compkit has no vision encoder, so the tokens
 * ship with the app instead of being computed from the pixels on the phone. Reading the APK's assets and
 * decoding the picture is EvoSampleAssets.kt's job; this file is plain Kotlin (host-compiled and tested).
 */
class EvoSample(
    val question: String,
    val imageFile: String,
    val rows: Int,
    val cols: Int,
    val visualDim: Int,
    val textTokens: Int,
    val textDim: Int,
    val visualTokens: FloatArray,
    val textEmbeds: FloatArray,
    val textMask: IntArray,
) {
    val n get() = rows * cols

    /** A sample built for another model width cannot run: say which sizes differ and how to regenerate. */
    fun checkFits(config: JSONObject) {
        val want = listOf("visual_dim" to visualDim, "text_dim" to textDim, "max_visual_tokens" to n, "max_text_tokens" to textTokens)
        val bad = want.filter { (key, have) -> config.optInt(key, have) != have }
        if (bad.isNotEmpty()) {
            val args = "--visual-dim ${config.optInt("visual_dim")} --text-dim ${config.optInt("text_dim")} --text-tokens ${config.optInt("max_text_tokens")}"
            throw CompkitException("evo_sample does not fit the EvoComp model (${bad.joinToString { it.first }}): rerun tools/make_evo_sample.py $args")
        }
    }

    companion object {
        /**
         * The sample from its two files: evo_sample.json's text and evo_sample.bin's bytes (little-endian float32
         * visual_tokens[n * visual_dim], float32 text_embeds[text_tokens * text_dim], int32 text_mask[text_tokens]).
         * [where] names the folder in error messages.
         */
        fun parse(json: String, bin: ByteArray, where: String = "evo_sample"): EvoSample {
            val meta = JSONObject(json)
            val grid = meta.getJSONArray("grid")
            val rows = grid.getInt(0)
            val cols = grid.getInt(1)
            val visualDim = meta.getInt("visual_dim")
            val textTokens = meta.getInt("text_tokens")
            val textDim = meta.getInt("text_dim")
            val expected = 4L * (rows * cols * visualDim + textTokens * textDim + textTokens)
            if (bin.size.toLong() != expected) {
                throw CompkitException("$where/evo_sample.bin has ${bin.size} bytes, its json says $expected: regenerate both with tools/make_evo_sample.py")
            }
            val buf = ByteBuffer.wrap(bin).order(ByteOrder.LITTLE_ENDIAN)
            val visual = FloatArray(rows * cols * visualDim).also { buf.asFloatBuffer().get(it) }
            buf.position(4 * visual.size)
            val text = FloatArray(textTokens * textDim).also { buf.asFloatBuffer().get(it) }
            buf.position(4 * (visual.size + text.size))
            val mask = IntArray(textTokens).also { buf.asIntBuffer().get(it) }
            return EvoSample(meta.getString("question"), meta.getString("image"), rows, cols, visualDim, textTokens, textDim, visual, text, mask)
        }
    }
}
