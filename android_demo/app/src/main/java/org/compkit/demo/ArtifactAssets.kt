package org.compkit.demo

import android.content.Context
import java.io.File

private const val ASSET_ROOT = "compkit"

/**
 * The export.build folder bundled under assets/compkit (./gradlew copyCompkitArtifacts), copied to app
 * storage on first use because ExecuTorch and the tokenizer read files by path.
 */
fun Artifacts.Companion.open(context: Context): Artifacts {
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
    return read(dir)
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
