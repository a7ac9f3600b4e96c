#include "vectors.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "error.h"

namespace compkit::testing {

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::vector<std::string> vector_dirs() {
  std::vector<std::string> dirs;
  std::stringstream s(env_or_empty("COMPKIT_VECTORS"));
  for (std::string d; std::getline(s, d, ':');)
    if (!d.empty()) dirs.push_back(d);
  return dirs;
}

const VectorSet& load_vectors(const std::string& dir) {
  static std::map<std::string, std::unique_ptr<VectorSet>> cache;
  auto& slot = cache[dir];
  if (!slot) {
    std::ifstream f(dir + "/vectors.json");
    if (!f) throw std::runtime_error("cannot read " + dir + "/vectors.json");
    slot = std::make_unique<VectorSet>();
    slot->dir = dir;
    slot->name = dir.substr(dir.find_last_of('/') + 1);
    slot->j = nlohmann::json::parse(f);
  }
  return *slot;
}

std::unique_ptr<TokenScorer> replay_scorer(const VectorSet& v) {
  using Out = std::pair<std::vector<float>, std::vector<float>>;
  auto table = std::make_shared<std::map<std::vector<int32_t>, Out>>();
  bool outlier = false;
  for (const auto& w : v.j["windows"]) {
    Out o{w["keep_prob"].get<std::vector<float>>(), {}};
    if (w.contains("outlier_z")) o.second = w["outlier_z"].get<std::vector<float>>(), outlier = true;
    (*table)[w["ids"].get<std::vector<int32_t>>()] = std::move(o);
  }
  auto fn = [table](const std::vector<int32_t>& ids, const std::vector<int32_t>&, std::vector<float>* p, std::vector<float>* z) {
    auto it = table->find(ids);
    if (it == table->end()) {
      std::string s;
      for (size_t i = 0; i < ids.size() && i < 12; ++i) s += std::to_string(ids[i]) + " ";
      throw Error(COMPKIT_ERR_MODEL, "window not in the vectors (ids " + s + "...): the native windows differ from Python's");
    }
    *p = it->second.first;
    if (!z->empty()) *z = it->second.second;
  };
  return std::make_unique<FunctionScorer>(fn, std::vector<int32_t>{}, outlier);
}

std::vector<std::string> strings(const nlohmann::json& a) { return a.get<std::vector<std::string>>(); }

std::vector<std::string> new_tokens(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back("[NEW" + std::to_string(i) + "]");
  return out;
}

}  // namespace compkit::testing
