/* freeDiameter dictionary extension for eapay's vendor AVPs (vendor and
 * codes from dictionaries/diameter/eapay.xml, via the generated
 * eapay_dict.h): without them freeDiameter cannot build or read the AVPs
 * that app_radgw's eapay plugin (rgwx_auth_eapay.c) converts. Every value
 * is kept as an OctetString: the gateway only moves the bytes, the payment
 * server and the terminal interpret them. V bit set, M bit clear
 * (DESIGN.md section 3). Built by scripts/build-freediameter.sh. */

#include <freeDiameter/extension.h>

#include "eapay_dict.h"

static int dict_eapay_entry(char *conffile)
{
	struct dict_object *vendor = NULL;
	struct dict_vendor_data vendor_data = { EAPAY_VENDOR_ID, "Eapay" };
	(void)conffile;
	CHECK_FCT(fd_dict_new(fd_g_config->cnf_dict, DICT_VENDOR, &vendor_data, NULL, &vendor));
#define EAPAY_AVP(code, name)                                                                        \
	{                                                                                                  \
		struct dict_avp_data data = { code, EAPAY_VENDOR_ID, name, AVP_FLAG_VENDOR | AVP_FLAG_MANDATORY, \
			AVP_FLAG_VENDOR, AVP_TYPE_OCTETSTRING };                                                  \
		CHECK_FCT(fd_dict_new(fd_g_config->cnf_dict, DICT_AVP, &data, NULL, NULL));                    \
	}
	EAPAY_AVPS(EAPAY_AVP)
#undef EAPAY_AVP
	LOG_D("Extension 'Dictionary definitions for eapay' initialized");
	return 0;
}

EXTENSION_ENTRY("dict_eapay", dict_eapay_entry);
