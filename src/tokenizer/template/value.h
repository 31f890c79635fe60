#pragma once
// The values a chat template computes with, and the Python semantics jinja2 gives them: truthiness,
// equality, ordering, str() and repr(). Templates are rendered by jinja2 on top of Python objects, so
// "what does this print" is always "what would Python print"; this file is where that is decided.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/result.h"

namespace tern::chat {

class Value;
using ValueList = std::vector<Value>;

enum class ValueKind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace, kFunction, kLoop };

/// Python has several sequence types that chat templates meet: lists, tuples (from `items()` and literal
/// `(a, b)`), dict views, and the single-pass generators returned by filters such as `select` and `map`.
/// They differ in how they print, in truthiness (a generator is always true) and in whether `len()` works.
enum class SeqKind { kList, kTuple, kGenerator, kDictKeys, kDictValues, kDictItems };

struct ListData {
  ValueList items;
  SeqKind kind = SeqKind::kList;
  size_t consumed = 0;  ///< generator items already taken; a second pass sees only what is left
};

/// A Python dict: insertion-ordered, keys compared with Python equality (so 1 and 1.0 are one key).
/// Lookup is linear; chat-template dicts (messages, tool schemas) hold few keys.
struct DictData {
  std::vector<std::pair<Value, Value>> entries;

  /// The value for `key`, or nullptr.
  const Value* find(const Value& key) const;
  /// The value for a string key, or nullptr.
  const Value* find(std::string_view key) const;
  /// Inserts or replaces, keeping the first insertion's position as Python does.
  void set(Value key, Value value);
};

/// Positional and keyword arguments of a call, in source order.
struct CallArgs {
  ValueList positional;
  std::vector<std::pair<std::string, Value>> keywords;
};

/// Anything callable from a template: globals (`raise_exception`, `namespace`, `range`), macros, bound
/// methods (`text.strip`), `loop.cycle`.
struct Function {
  std::string name;
  std::function<Result<Value>(CallArgs&)> call;
};

/// The `loop` variable of a for loop: the items being iterated and the current position.
struct LoopData {
  std::shared_ptr<const ValueList> items;
  size_t index0 = 0;
};

class Value {
 public:
  /// An undefined value with jinja2's generic message.
  Value() = default;
  Value(bool value) : kind_(ValueKind::kBool), bool_(value) {}                      // NOLINT: implicit by design
  Value(int value) : kind_(ValueKind::kInt), int_(value) {}                         // NOLINT
  Value(int64_t value) : kind_(ValueKind::kInt), int_(value) {}                     // NOLINT
  Value(double value) : kind_(ValueKind::kFloat), float_(value) {}                  // NOLINT
  Value(std::string value) : kind_(ValueKind::kString), text_(std::move(value)) {}  // NOLINT
  Value(std::string_view value) : Value(std::string(value)) {}                      // NOLINT
  Value(const char* value) : Value(std::string(value)) {}                           // NOLINT

  /// An undefined value; `message` is what jinja2 raises when the value is used ("'x' is undefined").
  static Value undefined(std::string message);
  /// Python None.
  static Value none();
  /// A string marked safe (`|safe`, `|escape`): jinja2's Markup, which escapes the other side of `+`.
  static Value markup(std::string text);
  static Value list(ValueList items, SeqKind kind = SeqKind::kList);
  static Value dict(DictData data);
  static Value make_namespace(DictData attributes);
  static Value function(std::string name, std::function<Result<Value>(CallArgs&)> call);
  static Value loop(std::shared_ptr<const ValueList> items, size_t index0);

  ValueKind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == ValueKind::kUndefined; }
  bool is_none() const { return kind_ == ValueKind::kNone; }
  bool is_bool() const { return kind_ == ValueKind::kBool; }
  bool is_int() const { return kind_ == ValueKind::kInt; }
  bool is_float() const { return kind_ == ValueKind::kFloat; }
  /// int, float or bool: what Python arithmetic accepts.
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return kind_ == ValueKind::kString; }
  bool is_markup() const { return kind_ == ValueKind::kString && markup_; }
  bool is_list() const { return kind_ == ValueKind::kList; }
  bool is_dict() const { return kind_ == ValueKind::kDict; }
  bool is_namespace() const { return kind_ == ValueKind::kNamespace; }
  bool is_function() const { return kind_ == ValueKind::kFunction; }
  bool is_loop() const { return kind_ == ValueKind::kLoop; }
  /// A list whose kind is `kind`.
  bool is_seq(SeqKind kind) const { return is_list() && list().kind == kind; }

  bool as_bool() const { return bool_; }
  int64_t as_int() const { return is_bool() ? static_cast<int64_t>(bool_) : int_; }
  /// int, bool or float widened to double.
  double as_double() const { return is_float() ? float_ : static_cast<double>(as_int()); }
  /// The string's UTF-8 text (also the message of an undefined value).
  const std::string& text() const { return text_; }
  const ListData& list() const { return *static_cast<const ListData*>(object_.get()); }
  /// Mutable access, only for marking a generator consumed.
  ListData& list_state() const { return *static_cast<ListData*>(object_.get()); }
  /// Items of a list or tuple, or the entries of a namespace.
  const ValueList& items() const { return list().items; }
  const DictData& dict() const { return *static_cast<const DictData*>(object_.get()); }
  /// Namespaces are the one mutable object templates have (`{% set ns.x = 1 %}`).
  DictData& namespace_attributes() const { return *static_cast<DictData*>(object_.get()); }
  const Function& function() const { return *static_cast<const Function*>(object_.get()); }
  const LoopData& loop() const { return *static_cast<const LoopData*>(object_.get()); }
  /// The shared object behind a list, dict, namespace, function or loop: Python's `is` for those.
  const void* identity() const { return object_.get(); }

 private:
  ValueKind kind_ = ValueKind::kUndefined;
  bool markup_ = false;
  union {
    bool bool_;
    int64_t int_ = 0;
    double float_;
  };
  std::string text_;
  // ListData, DictData, Function or LoopData, as `kind_` says. Lists and dicts are shared, never
  // copied: the immutable sandbox HF renders with forbids mutating them, so sharing is unobservable.
  std::shared_ptr<void> object_;
};

/// Python `bool(value)`; undefined is false, a generator is always true.
bool truthy(const Value& value);

/// Python `==`: 1 == 1.0 == True, lists compare element-wise, a list never equals a tuple.
bool equals(const Value& a, const Value& b);

/// Python ordering for `<`, `<=`, `>`, `>=`, `sort` and `min`/`max`: -1, 0 or 1, or a TypeError naming
/// `op` when the types do not order ("'<' not supported between instances of 'int' and 'str'").
Result<int> compare(const Value& a, const Value& b, std::string_view op = "<");

/// Python `str(value)`, which is what `{{ value }}` prints. Undefined prints as "". Fails for values
/// whose Python repr holds a memory address (functions, generators), which no golden could pin.
Result<std::string> to_str(const Value& value);

/// Python `repr(value)`, used for items inside printed lists and dicts.
Result<std::string> to_repr(const Value& value);

/// Python's type name, for error messages ("str", "int", "NoneType", "generator").
std::string type_name(const Value& value);

/// jinja2's description of an object in undefined messages ("dict object", "None").
std::string object_description(const Value& value);

/// The items a `for` loop (or `list()`) sees: a string's characters, a dict's keys, nothing for
/// undefined. Consumes generators.
Result<ValueList> iterate(const Value& value);

/// Python `len(value)`; undefined has length 0 as in jinja2.
Result<int64_t> length(const Value& value);

/// Key used to hash values for `unique`: Python hashes 1, 1.0 and True alike and refuses dicts/lists.
Result<std::string> hash_key(const Value& value);

}  // namespace tern::chat
