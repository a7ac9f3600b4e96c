# The two commands of the README. Both create .venv when it is missing.
# torch is installed first and pinned by constraints.txt: letting pip pick torch drags in CUDA wheels.
PY := .venv/bin/python
STAMP := .venv/.compkit-installed

.PHONY: build test venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

build: $(STAMP)
	$(PY) -m compressors.demo
	$(PY) -m export.build --target android

test: $(STAMP)
	command -v adb >/dev/null || (apt-get update -qq && apt-get install -y -qq adb)
	dpkg -s nlohmann-json3-dev libutf8proc-dev libgtest-dev >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq nlohmann-json3-dev libutf8proc-dev libgtest-dev)
	# the Android demo's Kotlin on the host JVM: a JDK, AOSP's org.json, npm's kotlin-compiler (cached, android_demo/tools/kotlinc.sh)
	dpkg -s openjdk-17-jdk-headless libandroid-json-java >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq openjdk-17-jdk-headless libandroid-json-java)
	command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq npm)
	bash android_demo/tools/kotlinc.sh install >/dev/null
	# the arm64 runner bundle (cross compiler, patchelf, Debian's arm64 .debs) and the emulated arm64 adb device (qemu-user)
	dpkg --print-foreign-architectures | grep -qx arm64 || (dpkg --add-architecture arm64 && apt-get update -qq)
	dpkg -s g++-aarch64-linux-gnu qemu-user patchelf >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq g++-aarch64-linux-gnu qemu-user patchelf)
	# two workers, one test file each (pytest-xdist): a file's module fixtures (builds, caches) stay on one worker
	$(PY) -m pytest -q -ra -n 2 --dist loadfile

clean:
	rm -rf artifacts build .pytest_cache
