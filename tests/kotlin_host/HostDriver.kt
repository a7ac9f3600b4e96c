// Drives the Android demo's own Kotlin classes (compiled from android_demo/app/src/main/java) on the host JVM,
// for tests/test_demo_kotlin.py. Input and output are JSON files; every check is made on the Python side.
//
//   java -Xcheck:jni -Djava.library.path=DIR -cp CLASSPATH org.compkit.demo.host.HostDriverKt replay TOKENIZER_DIR IN OUT
//   ... evo-sample SAMPLE_DIR OUT_PREFIX BUILD_DIR...     ... manifest OUT BUILD_DIR...
package org.compkit.demo.host

import org.compkit.demo.Artifacts
import org.compkit.demo.CompkitException
import org.compkit.demo.CompkitNative
import org.compkit.demo.EvoSample
import org.compkit.demo.MoosCompressor
import org.compkit.demo.MoosScorer
import org.json.JSONArray
import org.json.JSONObject
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

fun main(args: Array<String>) {
    when (args.firstOrNull()) {
        "replay" -> replay(args[1], File(args[2]), File(args[3]))
        "evo-sample" -> evoSample(File(args[1]), args[2], args.drop(3).map(::File))
        "manifest" -> manifest(File(args[1]), args.drop(2).map(::File))
        else -> throw IllegalArgumentException("usage: replay | evo-sample | manifest (see the file's header)")
    }
}

private fun floats(a: JSONArray) = FloatArray(a.length()) { a.getDouble(it).toFloat() }

/** {"kind": "OK" | exception class, "value": result or message}: the way each probe ended. */
private fun outcome(call: () -> Any?): JSONObject = try {
    val r = call()
    val value = when (r) {
        is IntArray -> JSONArray(r.toList())
        is JSONObject -> r
        else -> r.toString()
    }
    JSONObject().put("kind", "OK").put("value", value)
} catch (e: RuntimeException) {
    JSONObject().put("kind", e.javaClass.simpleName).put("value", e.message.toString())
}

/**
 * Replays the windows the Python reference scored (keyed by their unpadded ids) through MoosCompressor, as
 * the app's ExecuTorch scorer would answer them, so every compressed text must equal Python's.
 * IN: {"windows": [{"ids", "keep_prob", "outlier_z"}], "cases": [{"weight", "text", "rate", "target_token",
 * "force_tokens", "force_reserve_digit", "drop_consecutive", "token_to_word_first"}]}.
 */
private fun replay(tokenizerDir: String, input: File, output: File) {
    val spec = JSONObject(input.readText())
    val recorded = HashMap<String, Pair<FloatArray, FloatArray>>()
    val windows = spec.getJSONArray("windows")
    for (i in 0 until windows.length()) {
        val w = windows.getJSONObject(i)
        val ids = w.getJSONArray("ids")
        recorded[(0 until ids.length()).joinToString(",") { ids.getInt(it).toString() }] =
            floats(w.getJSONArray("keep_prob")) to floats(w.getJSONArray("outlier_z"))
    }
    val seen = JSONArray()
    val scorer = MoosScorer { ids, mask, keep, z ->
        val n = mask.count { it == 1 }
        seen.put(JSONArray(listOf(ids.size, n)))
        val (k, o) = recorded[ids.take(n).joinToString(",")]
            ?: throw IllegalStateException("window of $n ids was never scored by Python")
        k.copyInto(keep)
        o.copyInto(z)
    }
    val buckets = intArrayOf(128, 256, 512)
    val compressors = HashMap<Double, MoosCompressor>()
    val results = JSONArray()
    val cases = spec.getJSONArray("cases")
    for (i in 0 until cases.length()) {
        val c = cases.getJSONObject(i)
        val compressor = compressors.getOrPut(c.getDouble("weight")) {
            MoosCompressor(tokenizerDir, buckets, true, scorer, c.getDouble("weight"))
        }
        val force = c.getJSONArray("force_tokens").let { a -> List(a.length()) { a.getString(it) } }
        results.put(try {
            val r = compressor.compress(c.getString("text"), c.getDouble("rate"), c.getInt("target_token"), force,
                c.getBoolean("force_reserve_digit"), c.getBoolean("drop_consecutive"), c.getBoolean("token_to_word_first"))
            val stages = JSONObject()
            r.stageNames.forEachIndexed { s, name -> stages.put(name, r.stageMs[s]) }
            JSONObject().put("compressed", r.compressedText).put("words", r.words.size)
                .put("kept", r.kept.joinToString("") { if (it) "1" else "0" }).put("origin", r.originTokens)
                .put("tokens", r.compressedTokens).put("windows", r.windows).put("stages", stages)
        } catch (e: CompkitException) {
            JSONObject().put("error", e.message)
        })
    }
    // The glue's error paths, the compressor's lifetime rules and the top-k.
    val any = compressors.values.first()
    val probes = JSONObject()
        .put("empty", outcome { any.compress("", 0.5) })
        .put("unrecorded", outcome { any.compress("A sentence Python never scored, about zebras.", 0.5) })
        .put("bad_rate", outcome { any.compress("Some text.", 1.5) })
        .put("missing_tokenizer", outcome { MoosCompressor("$tokenizerDir/nope", buckets, true, scorer) })
        .put("evo_tie", outcome { CompkitNative.evoSelect(floatArrayOf(0.5f, 1f, 1f, 1f, 0f), 0, 2.5) })
        .put("evo_k", outcome { CompkitNative.evoSelect(floatArrayOf(3f, 1f, 2f, 5f), 2, 0.0) })
        .put("evo_nan", outcome { CompkitNative.evoSelect(floatArrayOf(Float.NaN, 1f), 1, 0.0) })
    compressors.values.forEach { it.close() }
    probes.put("after_close", outcome { any.compress("Some text.", 0.5) })
        .put("close_twice", outcome { any.close() })
        .put("destroy_null", outcome { CompkitNative.moosDestroy(0L) })
    output.writeText(JSONObject().put("results", results).put("probes", probes).put("window_lengths", seen).toString())
}

/**
 * EvoSample.parse on the bundled sample: its arrays written back to OUT_PREFIX.bin (the Python side compares
 * them with the file), its fields and checkFits against each build folder's models.evo.config to OUT_PREFIX.json.
 */
private fun evoSample(dir: File, outPrefix: String, builds: List<File>) {
    val json = File(dir, "evo_sample.json").readText()
    val bin = File(dir, "evo_sample.bin").readBytes()
    val s = EvoSample.parse(json, bin, dir.name)
    val back = ByteBuffer.allocate(4 * (s.visualTokens.size + s.textEmbeds.size + s.textMask.size)).order(ByteOrder.LITTLE_ENDIAN)
    s.visualTokens.forEach { back.putFloat(it) }
    s.textEmbeds.forEach { back.putFloat(it) }
    s.textMask.forEach { back.putInt(it) }
    File("$outPrefix.bin").writeBytes(back.array())
    val fits = JSONArray(builds.map { b -> outcome { s.checkFits(Artifacts.read(b).evoConfig) } })
    File("$outPrefix.json").writeText(JSONObject().put("question", s.question).put("image", s.imageFile)
        .put("rows", s.rows).put("cols", s.cols).put("n", s.n).put("visual_dim", s.visualDim).put("text_dim", s.textDim)
        .put("text_tokens", s.textTokens).put("fits", fits)
        .put("truncated", outcome { EvoSample.parse(json, bin.copyOf(bin.size - 4), dir.name) }).toString())
}

/** What the app reads from each build folder's manifest.json (Artifacts), or the error it reports. */
private fun manifest(output: File, builds: List<File>) {
    val out = JSONArray()
    for (b in builds) {
        val read = outcome { Artifacts.read(b) }
        if (read.getString("kind") != "OK") {
            out.put(JSONObject().put("read", read))
            continue
        }
        val a = Artifacts.read(b)
        val rel = { path: String -> File(path).relativeTo(b).path }
        out.put(JSONObject().put("read", read)
            .put("tokenizer_dir", a.tokenizerDir.relativeTo(b).path).put("has_outlier", a.hasOutlier)
            .put("moos_ptes", outcome { JSONObject(a.moosPtes().mapKeys { it.key.toString() }.mapValues { rel(it.value) }) })
            .put("evo_pte", outcome { rel(a.evoPte()) })
            .put("moos_quants", JSONArray(a.moosPtesByQuant().keys.sorted()))
            .put("evo_quants", JSONArray(a.evoPtesByQuant().keys.sorted())))
    }
    output.writeText(out.toString())
}
