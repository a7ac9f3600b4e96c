package org.compkit.demo

import org.json.JSONObject
import java.io.File

/**
 * An export.build folder on disk, read through its manifest.json (docs/ARTIFACTS.md). On the phone it is the
 * folder bundled under assets/compkit and copied to app storage (ArtifactAssets.kt: Artifacts.open(context));
 * this file is plain Kotlin (host-compiled and tested).
 */
class Artifacts private constructor(val dir: File, val manifest: JSONObject) {
    val tokenizerDir: File get() = File(dir, moos().optString("tokenizer_dir", "moos_tokenizer"))
    /** Whether the MOOSComp artifacts return outlier_z beside keep_prob (the representation outlier). */
    val hasOutlier: Boolean
        get() = enabled("moos").any { a -> a.optJSONArray("output_names")?.let { n -> (0 until n.length()).any { n.getString(it) == "outlier_z" } } == true }
    val evoConfig: JSONObject get() = manifest.getJSONObject("models").getJSONObject("evo").getJSONObject("config")

    private fun moos() = manifest.getJSONObject("models").getJSONObject("moos")

    private fun enabled(model: String): List<JSONObject> {
        val all = manifest.getJSONArray("artifacts")
        return (0 until all.length()).map { all.getJSONObject(it) }
            .filter { it.getString("model") == model && it.getString("backend") == "xnnpack" && it.optBoolean("enabled") }
    }

    /** quant -> (bucket -> .pte path) for every quant with enabled MOOSComp XNNPACK artifacts. */
    fun moosPtesByQuant(): Map<String, Map<Int, String>> = enabled("moos").groupBy { it.getString("quant") }
        .mapValues { (_, list) -> list.associate { it.getInt("bucket") to File(dir, it.getString("file")).path } }

    /** quant -> .pte path of every enabled EvoComp XNNPACK artifact. */
    fun evoPtesByQuant(): Map<String, String> = enabled("evo").associate { it.getString("quant") to File(dir, it.getString("file")).path }

    /** bucket -> .pte path for the first quant (in [preference] order) that has a .pte for every bucket. */
    fun moosPtes(preference: List<String> = QUANT_PREFERENCE): Map<Int, String> {
        val byQuant = enabled("moos").groupBy { it.getString("quant") }
        val quant = preference.firstOrNull { it in byQuant } ?: byQuant.keys.firstOrNull()
            ?: throw CompkitException("manifest.json lists no enabled MOOSComp XNNPACK .pte: re-export with --target android")
        return byQuant.getValue(quant).associate { it.getInt("bucket") to File(dir, it.getString("file")).path }
    }

    fun evoPte(preference: List<String> = QUANT_PREFERENCE): String {
        val evo = enabled("evo")
        val pick = preference.firstNotNullOfOrNull { q -> evo.firstOrNull { it.getString("quant") == q } } ?: evo.firstOrNull()
            ?: throw CompkitException("manifest.json lists no enabled EvoComp XNNPACK .pte: re-export with --target android")
        return File(dir, pick.getString("file")).path
    }

    fun file(name: String) = File(dir, name)

    companion object {
        /** int8 with dynamic activations was the most accurate int8 and the fastest (shared/toolchain.md). */
        val QUANT_PREFERENCE = listOf("int8dyn", "fp32", "int8static", "8da4w")

        fun read(dir: File): Artifacts {
            val manifest = File(dir, "manifest.json")
            if (!manifest.isFile) throw CompkitException("$dir has no manifest.json: copy a whole export.build folder")
            return Artifacts(dir, JSONObject(manifest.readText()))
        }
    }
}
