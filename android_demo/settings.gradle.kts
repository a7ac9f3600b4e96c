// compkit Android demo: MOOSComp prompt compression and EvoComp visual-token selection on the phone.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral() // org.pytorch:executorch-android
    }
}
rootProject.name = "CompkitDemo"
include(":app")
