package org.compkit.demo

import androidx.test.ext.junit.runners.AndroidJUnit4
import androidx.test.platform.app.InstrumentationRegistry
import org.json.JSONArray
import org.json.JSONObject
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assume.assumeTrue
import org.junit.Test
import org.junit.runner.RunWith
import java.nio.ByteBuffer
import java.nio.ByteOrder
import kotlin.math.abs

/**
 * The shared test vectors (vectors.json, written by export.build beside the artifacts and bundled by
 * copyCompkitArtifacts) on the phone: the native core fed Python's keep probabilities must give Python's
 * compressed texts exactly; the bundled .pte must give Python's probabilities within the artifact's parity
 * thresholds (runtime_py/parity.py); EvoComp's top-k must give Python's indices exactly.
 *
 *   ./gradlew connectedAndroidTest
 */
@RunWith(AndroidJUnit4::class)
class SharedVectorsTest {
    private val artifacts by lazy { Artifacts.open(InstrumentationRegistry.getInstrumentation().targetContext) }
    private val vectors by lazy {
        val f = artifacts.file("vectors.json")
        assumeTrue("no vectors.json bundled: rerun export.build, then copyCompkitArtifacts", f.isFile)
        JSONObject(f.readText())
    }

    private class Window(val keep: FloatArray, val z: FloatArray?)

    private fun floats(a: JSONArray) = FloatArray(a.length()) { a.getDouble(it).toFloat() }

    /** The Python reference's model outputs, keyed by the window's unpadded ids. */
    private val table by lazy {
        val windows = vectors.getJSONArray("windows")
        (0 until windows.length()).associate { i ->
            val w = windows.getJSONObject(i)
            val ids = w.getJSONArray("ids")
            (0 until ids.length()).joinToString(",") { ids.getInt(it).toString() } to
                Window(floats(w.getJSONArray("keep_prob")), w.optJSONArray("outlier_z")?.let(::floats))
        }
    }
    private val hasOutlier by lazy { table.values.first().z != null }

    private fun key(ids: IntArray, mask: IntArray) = ids.take(mask.count { it == 1 }).joinToString(",")

    /** Replays Python's outputs; optionally runs a real model alongside and records how far it is from them. */
    private inner class Replay(private val model: MoosScorer? = null) : MoosScorer {
        var maxAbs = 0f

        override fun score(inputIds: IntArray, attentionMask: IntArray, keepProb: FloatArray, outlierZ: FloatArray) {
            val w = table[key(inputIds, attentionMask)] ?: throw IllegalStateException("window not in vectors.json")
            if (model == null) {
                w.keep.copyInto(keepProb)
                w.z?.copyInto(outlierZ)
                return
            }
            model.score(inputIds, attentionMask, keepProb, outlierZ)
            for (i in w.keep.indices) maxAbs = maxOf(maxAbs, abs(keepProb[i] - w.keep[i]))
        }
    }

    private fun compressAll(scorer: MoosScorer, plainOnly: Boolean, limit: Int = Int.MAX_VALUE): List<Pair<JSONObject, MoosResult>> {
        val texts = vectors.getJSONArray("texts")
        val buckets = artifacts.moosPtes().keys.sorted().toIntArray() // windows arrive padded, as in the app
        val byWeight = HashMap<Double, MoosCompressor>()
        val cases = vectors.getJSONArray("compress")
        val out = mutableListOf<Pair<JSONObject, MoosResult>>()
        try {
            for (i in 0 until cases.length()) {
                val c = cases.getJSONObject(i)
                val plain = c.getDouble("outlier_weight") == 0.0 && c.getJSONArray("force_tokens").length() == 0 &&
                    c.getInt("target_token") < 0 && !c.getBoolean("force_reserve_digit") && c.getString("token_to_word") == "mean"
                if (plainOnly && !plain) continue
                if (out.size >= limit) break
                val weight = c.getDouble("outlier_weight")
                val compressor = byWeight.getOrPut(weight) {
                    MoosCompressor(artifacts.tokenizerDir.path, buckets, hasOutlier, scorer, weight)
                }
                val force = c.getJSONArray("force_tokens").let { a -> List(a.length()) { a.getString(it) } }
                out += c to compressor.compress(
                    texts.getString(c.getInt("text")), c.getDouble("rate"), c.getInt("target_token"), force,
                    c.getBoolean("force_reserve_digit"), c.getBoolean("drop_consecutive"), c.getString("token_to_word") == "first",
                )
            }
        } finally {
            byWeight.values.forEach { it.close() }
        }
        return out
    }

    @Test
    fun compressedTextsMatchPythonGivenItsProbabilities() {
        val results = compressAll(Replay(), plainOnly = false)
        val wrong = results.filter { (c, r) ->
            r.compressedText != c.getString("compressed") || r.originTokens != c.getInt("origin_tokens") ||
                r.compressedTokens != c.getInt("compressed_tokens")
        }
        assertTrue("${wrong.size} of ${results.size} differ, first: ${wrong.firstOrNull()?.first}", wrong.isEmpty())
    }

    @Test
    fun executorchMatchesPythonWithinParityThresholds() {
        val reference = compressAll(Replay(), plainOnly = true, limit = 60).map { it.second }
        for ((quant, ptes) in artifacts.moosPtesByQuant()) {
            ExecuTorchMoosScorer(ptes).use { model ->
                val replay = Replay(model)
                val device = compressAll(replay, plainOnly = true, limit = 60).map { it.second }
                var same = 0
                var total = 0
                for ((a, b) in reference.zip(device)) {
                    assertEquals("$quant: the words differ (tokenization is not the model's job)", a.words.toList(), b.words.toList())
                    same += a.kept.indices.count { a.kept[it] == b.kept[it] }
                    total += a.kept.size
                }
                val agreement = same.toDouble() / total
                if (quant == "fp32") {
                    assertTrue("$quant: keep_prob max-abs ${replay.maxAbs} > 1e-4", replay.maxAbs <= 1e-4f)
                    assertTrue("$quant: compressed texts differ", reference.map { it.compressedText } == device.map { it.compressedText })
                } else {
                    assertTrue("$quant: kept-word agreement $agreement < 0.98", agreement >= 0.98)
                }
            }
        }
    }

    @Test
    fun evoSelectMatchesPython() {
        val cases = vectors.getJSONObject("evo").getJSONArray("select")
        for (i in 0 until cases.length()) {
            val c = cases.getJSONObject(i)
            val k = if (c.isNull("k")) 0 else c.getInt("k")
            val ratio = if (c.isNull("ratio")) 0.0 else c.getDouble("ratio")
            val kept = c.getJSONArray("kept").let { a -> IntArray(a.length()) { a.getInt(it) } }
            assertTrue("evo select case $i", kept.contentEquals(CompkitNative.evoSelect(floats(c.getJSONArray("scores")), k, ratio)))
        }
    }

    @Test
    fun evoModelMatchesPython() {
        val model = vectors.getJSONObject("evo").optJSONObject("model")
        assumeTrue("vectors.json has no EvoComp model case", model != null)
        val bin = artifacts.file(model!!.getString("bin"))
        assumeTrue("${bin.name} not bundled", bin.isFile)
        val (n, dv) = model.getJSONArray("visual_shape").let { it.getInt(0) to it.getInt(1) }
        val (t, dt) = model.getJSONArray("text_shape").let { it.getInt(0) to it.getInt(1) }
        val buf = ByteBuffer.wrap(bin.readBytes()).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
        val visual = FloatArray(n * dv).also { buf.get(it) }
        val text = FloatArray(t * dt).also { buf.get(it) }
        val mask = IntArray(t) { buf.get().toInt() } // stored as float32; the artifact takes int32
        val expected = floats(model.getJSONArray("keep_logits"))
        val kept = model.getJSONObject("kept")
        for ((quant, pte) in artifacts.evoPtesByQuant()) {
            val logits = ExecuTorchEvo(pte).use { it.scores(visual, n, dv, text, t, dt, mask) }
            for (ratio in listOf("2.0", "3.0", "4.0")) {
                val want = kept.getJSONArray(ratio).let { a -> IntArray(a.length()) { a.getInt(it) } }
                assertTrue("select on Python's logits at $ratio", want.contentEquals(CompkitNative.evoSelect(expected, 0, ratio.toDouble())))
                val got = CompkitNative.evoSelect(logits, 0, ratio.toDouble()).toSet()
                val iou = got.intersect(want.toSet()).size.toDouble() / got.union(want.toSet()).size
                if (quant == "fp32") {
                    val maxAbs = logits.indices.maxOf { abs(logits[it] - expected[it]) }
                    assertTrue("$quant: keep_logits max-abs $maxAbs > 1e-4", maxAbs <= 1e-4f)
                }
                assertTrue("$quant at ${ratio}x: top-k IoU $iou < ${if (quant == "fp32") 1.0 else 0.95}", iou >= if (quant == "fp32") 1.0 else 0.95)
            }
        }
    }
}
