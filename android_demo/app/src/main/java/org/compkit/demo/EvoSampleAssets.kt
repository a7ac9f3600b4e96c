package org.compkit.demo

import android.content.res.AssetManager
import android.graphics.Bitmap
import android.graphics.BitmapFactory

/** The EvoComp sample read from the APK's assets, with its picture decoded (only drawn: the model reads the tokens). */
class BundledEvoSample(val sample: EvoSample, val image: Bitmap) {
    companion object {
        fun load(assets: AssetManager, dir: String = "evo_sample"): BundledEvoSample {
            val json = assets.open("$dir/evo_sample.json").use { it.readBytes().decodeToString() }
            val sample = EvoSample.parse(json, assets.open("$dir/evo_sample.bin").use { it.readBytes() }, dir)
            val image = assets.open("$dir/${sample.imageFile}").use { BitmapFactory.decodeStream(it) }
                ?: throw CompkitException("$dir/${sample.imageFile} is not an image: regenerate with tools/make_evo_sample.py")
            return BundledEvoSample(sample, image)
        }
    }
}
