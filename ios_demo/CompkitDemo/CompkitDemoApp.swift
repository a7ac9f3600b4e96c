import SwiftUI

@main
struct CompkitDemoApp: App {
    var body: some Scene {
        WindowGroup {
            TabView {
                PromptView()
                    .tabItem { Label("MOOSComp", systemImage: "text.badge.minus") }
                VisionView()
                    .tabItem { Label("EvoComp", systemImage: "photo") }
            }
        }
    }
}
