// Plain (unsanitized) builds have no sanitizer runtime; this stands in for its death-callback hook.
extern "C" void __sanitizer_set_death_callback(void (*)()) {}
