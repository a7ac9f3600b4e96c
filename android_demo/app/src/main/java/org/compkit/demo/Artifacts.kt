package org.compkit.demo

import android.content.Context
import org.json.JSONObject
import java.io.File

/**
 * The export.build folder bundled under assets/compkit (./gradlew copyCompkitArtifacts), copied to app
 * storage on first use because ExecuTorch and the tokenizer read files by path.
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
        private const val ASSET_ROOT = "compkit"

        fun open(context: Context): Artifacts {
            val assets = context.assets
            if (assets.list(ASSET_ROOT).isNullOrEmpty()) {
                throw CompkitException("no artifacts bundled: run ./gradlew copyCompkitArtifacts -PcompkitBuildDir=PATH and rebuild (docs/DEMOS.md)")
            }
            // One copy per installed APK: a reinstall with new artifacts gets a fresh folder.
            val stamp = context.packageManager.getPackageInfo(context.packageName, 0).lastUpdateTime
            val dir = File(context.filesDir, "compkit-$stamp")
            if (!dir.isDirectory) {
                context.filesDir.listFiles { f -> f.name.startsWith("compkit-") }?.forEach { it.deleteRecursively() }
                val tmp = File(context.filesDir, "compkit.tmp").apply { deleteRecursively() }
                copyAssetTree(context, ASSET_ROOT, tmp)
                if (!tmp.renameTo(dir)) throw CompkitException("could not move $tmp to $dir")
            }
            return Artifacts(dir, JSONObject(File(dir, "manifest.json").readText()))
        }

        private fun copyAssetTree(context: Context, path: String, to: File) {
            val children = context.assets.list(path).orEmpty()
            if (children.isEmpty()) {
                to.parentFile?.mkdirs()
                context.assets.open(path).use { input -> to.outputStream().use { input.copyTo(it) } }
                return
            }
            to.mkdirs()
            children.forEach { copyAssetTree(context, "$path/$it", File(to, it)) }
        }
    }
}
