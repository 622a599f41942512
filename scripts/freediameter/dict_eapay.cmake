# eapay's vendor AVPs for freeDiameter (scripts/build-freediameter.sh adds
# this directory to extensions/ with dict_eapay.c and the generated eapay_dict.h).
PROJECT("eapay dictionary definitions" C)
FD_ADD_EXTENSION(dict_eapay dict_eapay.c)
INSTALL(TARGETS dict_eapay
	LIBRARY DESTINATION ${INSTALL_EXTENSIONS_SUFFIX}
	COMPONENT freeDiameter-dictionary-eapay)
