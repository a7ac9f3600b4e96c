import groovy.json.JsonSlurper

plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
    id("org.jetbrains.kotlin.plugin.compose")
}

android {
    namespace = "org.compkit.demo"
    compileSdk = 35
    ndkVersion = "27.2.12479018"

    defaultConfig {
        applicationId = "org.compkit.demo"
        minSdk = 26
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
        testInstrumentationRunner = "androidx.test.runner.AndroidJUnitRunner"
        ndk { abiFilters += listOf("arm64-v8a") } // the ExecuTorch AAR's XNNPACK build is what phones run
        externalNativeBuild {
            cmake {
                arguments += listOf("-DANDROID_STL=c++_static")
                cppFlags += listOf("-std=c++17")
            }
        }
    }
    externalNativeBuild {
        cmake {
            path = file("src/main/cpp/CMakeLists.txt")
            version = "3.22.1"
        }
    }
    buildTypes {
        release {
            isMinifyEnabled = false
            signingConfig = signingConfigs.getByName("debug") // a demo: installable without a keystore
        }
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions { jvmTarget = "17" }
    buildFeatures { compose = true }
    // .pte and .bin are read from a file copy; storing them uncompressed makes that copy a plain read
    androidResources { noCompress += listOf("pte", "bin") }
}

dependencies {
    // Must match the executorch that exported the .pte files (pyproject.toml: executorch==1.5.1).
    implementation("org.pytorch:executorch-android:1.5.1")
    implementation(platform("androidx.compose:compose-bom:2024.12.01"))
    implementation("androidx.compose.ui:ui")
    implementation("androidx.compose.foundation:foundation")
    implementation("androidx.compose.material3:material3")
    implementation("androidx.activity:activity-compose:1.9.3")
    androidTestImplementation("androidx.test.ext:junit:1.2.1")
    androidTestImplementation("androidx.test:runner:1.6.2")
}

// Copies one `python -m export.build --target android` folder into the app's assets:
//   ./gradlew copyCompkitArtifacts -PcompkitBuildDir=/abs/path/to/artifacts/20261126-150000-android
// Takes manifest.json, vectors.json (+ .evo.bin), moos_tokenizer/ and every enabled XNNPACK .pte the manifest lists.
// All checks run when the task runs, so syncing or listing tasks never needs an export folder.
tasks.register("copyCompkitArtifacts") {
    group = "compkit"
    description = "Copy an export.build --target android folder (-PcompkitBuildDir=PATH) into src/main/assets/compkit"
    val dirProperty = providers.gradleProperty("compkitBuildDir")
    val root = rootProject.projectDir
    val dest = layout.projectDirectory.dir("src/main/assets/compkit").asFile
    doLast {
        val path = dirProperty.orNull
            ?: throw GradleException("pass the export folder: ./gradlew copyCompkitArtifacts -PcompkitBuildDir=PATH (from `python -m export.build --target android`)")
        val buildDir = root.resolve(path)
        val manifestFile = buildDir.resolve("manifest.json")
        if (!manifestFile.isFile) {
            throw GradleException("no manifest.json in $buildDir: run `python -m export.build --target android` and pass its folder as -PcompkitBuildDir=PATH")
        }
        @Suppress("UNCHECKED_CAST")
        val manifest = JsonSlurper().parse(manifestFile) as Map<String, Any?>
        if (manifest["complete"] == false) { // an interrupted export (docs/RELIABILITY.md); absent in older builds
            val why = manifest["stopped"]?.let { "it was $it" } ?: "the export was interrupted or crashed"
            throw GradleException("$manifestFile is marked incomplete ($why): rebuild into a new folder with `python -m export.build --target android`")
        }
        if (manifest["target"] != "android") {
            throw GradleException("$manifestFile was built for target '${manifest["target"]}', not android: rebuild with --target android")
        }
        @Suppress("UNCHECKED_CAST")
        val enabled = (manifest["artifacts"] as List<Map<String, Any?>>)
            .filter { it["enabled"] == true && it["backend"] == "xnnpack" }
            .map { it["file"] as String }
        if (enabled.isEmpty()) {
            throw GradleException("$manifestFile lists no enabled XNNPACK .pte: check its disabled_reason fields")
        }
        val optional = listOf("vectors.json", "vectors.json.evo.bin") // the shared test vectors, when export.build wrote them
        val wanted = listOf("manifest.json", "moos_tokenizer") + enabled + optional
        val missing = wanted.filter { it !in optional && !buildDir.resolve(it).exists() }
        if (missing.isNotEmpty()) throw GradleException("$buildDir is incomplete, missing: ${missing.joinToString()}; rerun export.build")
        // Copy beside the destination, then swap it in: a failed copy never leaves half an asset folder.
        val tmp = dest.resolveSibling("compkit.tmp")
        tmp.deleteRecursively()
        wanted.map { buildDir.resolve(it) }.filter { it.exists() }.forEach { it.copyRecursively(tmp.resolve(it.name)) }
        dest.deleteRecursively()
        if (!tmp.renameTo(dest)) throw GradleException("could not move $tmp to $dest")
        logger.lifecycle("copied ${enabled.size} .pte files, the tokenizer and vectors.json into $dest")
    }
}
