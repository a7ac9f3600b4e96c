package org.compkit.demo

import android.content.res.AssetManager
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import org.json.JSONObject
import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * The bundled EvoComp sample (assets/evo_sample, written by tools/make_evo_sample.py): an image, the visual
 * tokens precomputed for it and a question's text embeddings. compkit has no vision encoder, so the tokens
 * ship with the app instead of being computed from the pixels on the phone.
 */
class EvoSample(
    val image: Bitmap,
    val question: String,
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
        fun load(assets: AssetManager, dir: String = "evo_sample"): EvoSample {
            val meta = JSONObject(assets.open("$dir/evo_sample.json").use { it.readBytes().decodeToString() })
            val grid = meta.getJSONArray("grid")
            val rows = grid.getInt(0)
            val cols = grid.getInt(1)
            val visualDim = meta.getInt("visual_dim")
            val textTokens = meta.getInt("text_tokens")
            val textDim = meta.getInt("text_dim")
            val bytes = assets.open("$dir/evo_sample.bin").use { it.readBytes() }
            val expected = 4L * (rows * cols * visualDim + textTokens * textDim + textTokens)
            if (bytes.size.toLong() != expected) {
                throw CompkitException("$dir/evo_sample.bin has ${bytes.size} bytes, its json says $expected: regenerate both with tools/make_evo_sample.py")
            }
            val buf = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN)
            val visual = FloatArray(rows * cols * visualDim).also { buf.asFloatBuffer().get(it) }
            buf.position(4 * visual.size)
            val text = FloatArray(textTokens * textDim).also { buf.asFloatBuffer().get(it) }
            buf.position(4 * (visual.size + text.size))
            val mask = IntArray(textTokens).also { buf.asIntBuffer().get(it) }
            val image = assets.open("$dir/" + meta.getString("image")).use { BitmapFactory.decodeStream(it) }
            return EvoSample(image, meta.getString("question"), rows, cols, visualDim, textTokens, textDim, visual, text, mask)
        }
    }
}
