package org.compkit.demo

import android.os.Bundle
import androidx.activity.ComponentActivity
import androidx.activity.compose.setContent
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.safeDrawingPadding
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.Surface
import androidx.compose.material3.Tab
import androidx.compose.material3.TabRow
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableIntStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.saveable.rememberSaveable
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.platform.LocalContext

class MainActivity : ComponentActivity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContent {
            MaterialTheme {
                Surface(Modifier.fillMaxSize()) { DemoTabs() }
            }
        }
    }
}

@Composable
fun DemoTabs() {
    val context = LocalContext.current
    // Opening the artifacts copies them out of the APK once; both screens share the result (or its error).
    val artifacts = remember { runCatching { Artifacts.open(context.applicationContext) } }
    var tab by rememberSaveable { mutableIntStateOf(0) }
    Column(Modifier.fillMaxSize().safeDrawingPadding()) {
        TabRow(selectedTabIndex = tab) {
            Tab(selected = tab == 0, onClick = { tab = 0 }, text = { Text("MOOSComp prompt") })
            Tab(selected = tab == 1, onClick = { tab = 1 }, text = { Text("EvoComp image") })
        }
        artifacts.fold(
            onSuccess = { if (tab == 0) PromptScreen(it) else VisionScreen(it) },
            onFailure = { Text(it.message ?: it.toString(), color = MaterialTheme.colorScheme.error) },
        )
    }
}
